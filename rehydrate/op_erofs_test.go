package rehydrate

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/erofsprecomp"
	"github.com/rehydrator/rehydrator/lzmarepro"
)

// erofsUtilsBin is where scripts/build-erofs-utils.sh installs erofs-utils 1.8.6 (the one with
// LZMA); EROFS_UTILS_BIN overrides it.
const erofsUtilsBin = "/var/cache/rehydrator-tools/erofs-utils-1.8.6/bin"

// erofsLZMAImage makes a small EROFS image with mkfs.erofs as the live ISO's root.erofs is made
// (LZMA level 6, fragments, 1 MiB physical clusters) of a generated tree.
func erofsLZMAImage(t testing.TB, seed uint64) []byte {
	t.Helper()
	bin := os.Getenv("EROFS_UTILS_BIN")
	if bin == "" {
		bin = erofsUtilsBin
	}
	mkfs := filepath.Join(bin, "mkfs.erofs")
	if _, err := os.Stat(mkfs); err != nil {
		t.Fatalf("%s missing (%v): run scripts/build-erofs-utils.sh or set EROFS_UTILS_BIN", mkfs, err)
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	r := rand.New(rand.NewPCG(seed, 1))
	words := strings.Fields("usr lib share locale python perl module the of and a to in erofs cluster file data")
	for i := range 60 {
		var b bytes.Buffer
		for n := 1 + r.IntN(9000); b.Len() < n; {
			b.WriteString(words[r.IntN(len(words))] + " ")
		}
		p := filepath.Join(tree, fmt.Sprintf("d%d/f%02d.txt", i%4, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile("/usr/bin/gzip"); err == nil {
		if err := os.WriteFile(filepath.Join(tree, "gzip"), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "root.erofs")
	args := []string{"--quiet", "-T1700000000", "-U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f", "-zlzma,level=6", "-Efragments", "-C1048576", img, tree}
	if out, err := exec.Command(mkfs, args...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs: %v: %s", err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// erofsCase is a file holding two EROFS images between other bytes, its expanded stream and
// the erofs-restore step that writes it again.
func erofsCase(t testing.TB) (file, expanded []byte, step Step, clusters int) {
	t.Helper()
	var f, x bytes.Buffer
	var p erofsParams
	other := func(n int, c byte) {
		b := bytes.Repeat([]byte{c, 'x', 0, 7}, n/4)
		f.Write(b)
		x.Write(b)
	}
	for i, seed := range []uint64{1, 2} {
		other(2048*(i+1)+4, byte('a'+i))
		img := erofsLZMAImage(t, seed)
		plan, err := erofsprecomp.Scan(bytes.NewReader(img), int64(len(img)), 2)
		if err != nil {
			t.Fatal(err)
		}
		clusters += len(plan.Clusters)
		n := x.Len()
		if err := erofsprecomp.Expand(&x, bytes.NewReader(img), int64(len(img)), plan); err != nil {
			t.Fatal(err)
		}
		p.Images = append(p.Images, erofsSpan{Offset: int64(f.Len()), Size: int64(len(img)), Expanded: int64(x.Len() - n)})
		f.Write(img)
	}
	other(1000, 'z')
	return f.Bytes(), x.Bytes(), mustStep(t, OpEROFS, p), clusters
}

// erofs-restore writes the original file from its expanded stream through a recipe as an image
// carries it; a damaged stream or recipe is a one-line error, never a wrong file.
func TestEROFSRestore(t *testing.T) {
	file, expanded, step, clusters := erofsCase(t)
	c := formatCase{"erofs", file, expanded, step}
	r, blobs := recipeFor(c, expanded)
	doc, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if r, err = ParseRecipe(doc); err != nil {
		t.Fatal(err)
	}
	e := NewEngine(r, blobs, t.TempDir())
	var out bytes.Buffer
	err = e.Rehydrate(context.Background(), r.Artifacts[0].ID, &out, nil)
	e.Close()
	if lzmarepro.Version() == "" {
		// Without cgo nothing can be expanded, and erofs-restore says why it cannot run.
		if clusters != 0 {
			t.Fatalf("%d clusters expanded without liblzma", clusters)
		}
		if err != nil {
			t.Fatal(err)
		}
	} else {
		if clusters == 0 {
			t.Fatal("no cluster of mkfs.erofs's images reproduces")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(out.Bytes(), file) {
		t.Fatalf("erofs-restore wrote %d other bytes than the %d of the file", out.Len(), len(file))
	}

	var p erofsParams
	if err := json.Unmarshal(step.Params, &p); err != nil {
		t.Fatal(err)
	}
	flip := bytes.Clone(expanded)
	flip[p.Images[1].Offset+int64(len(expanded))/4] ^= 0x40 // plain data inside a cluster, or a gap byte
	longer := p
	longer.Images = append([]erofsSpan(nil), p.Images...)
	longer.Images[0].Size++
	for name, tc := range map[string]struct {
		guest []byte
		step  Step
	}{
		"truncated stream":   {expanded[:len(expanded)/2], step},
		"truncated header":   {expanded[:p.Images[0].Offset+5], step},
		"wrong image size":   {expanded, mustStep(t, OpEROFS, longer)},
		"changed plain data": {flip, step},
	} {
		c := formatCase{"erofs", file, tc.guest, tc.step}
		r, blobs := recipeFor(c, tc.guest)
		e := NewEngine(r, blobs, t.TempDir())
		err := e.Rehydrate(context.Background(), r.Artifacts[0].ID, &bytes.Buffer{}, nil)
		e.Close()
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want a one-line error", name, err)
		}
	}
}

// Bad parameters are refused with a one-line error naming the op.
func TestEROFSRestoreBadParams(t *testing.T) {
	for _, js := range []string{`{}`, `{"images":[]}`, `{"images":[{"offset":-1,"size":4,"expanded":4}]}`,
		`{"images":[{"offset":0,"size":0,"expanded":4}]}`, `{"images":[{"offset":8,"size":8,"expanded":9},{"offset":12,"size":8,"expanded":9}]}`,
		`{"images":[{"offset":0,"size":8,"expanded":9}],"extra":1}`, `{"images":[{"offset":4611686018427387900,"size":8,"expanded":9}]}`} {
		_, _, err := (&Step{Op: OpEROFS, Params: json.RawMessage(js)}).decode()
		if !errors.Is(err, ErrBadRecipe) || !strings.Contains(err.Error(), OpEROFS+" params") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want a bad recipe naming %q", js, err, OpEROFS+" params")
		}
	}
}

// A stream whose header names an expanded cluster needs liblzma: without cgo the error says to
// use a build with cgo; with it, the missing body is an error. Either way one line.
func TestEROFSRestoreNeedsLZMA(t *testing.T) {
	h := []byte("RHEROFSX")
	for _, v := range []uint64{1, 1, 6, 8 << 20, 0x5d, 1, 0, 4096, 100, 5000, 0, 0} {
		h = binary.AppendUvarint(h, v)
	}
	stream := append(append([]byte("before"), h...), make([]byte, 5000)...)
	p := erofsParams{Images: []erofsSpan{{Offset: 6, Size: 4096, Expanded: int64(len(stream) - 6)}}}
	c := formatCase{"erofs", make([]byte, 4102), stream, mustStep(t, OpEROFS, p)}
	r, blobs := recipeFor(c, stream)
	e := NewEngine(r, blobs, t.TempDir())
	defer e.Close()
	err := e.Rehydrate(context.Background(), r.Artifacts[0].ID, &bytes.Buffer{}, nil)
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("%v, want a one-line error", err)
	}
	if lzmarepro.Version() == "" && (!errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "built without cgo")) {
		t.Fatalf("%v, want an error saying the rehydrator was built without cgo", err)
	}
	t.Log(err)
}

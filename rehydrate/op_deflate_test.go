package rehydrate

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/ociarchive"
)

// deflateInput is data that deflate compresses in all its ways: text, binary, zeros, noise.
func deflateInput(n int) []byte {
	rng := rand.New(rand.NewSource(int64(n)))
	var b bytes.Buffer
	for b.Len() < n {
		switch rng.Intn(4) {
		case 0:
			b.WriteString("ignition.platform.id=qemu console=ttyS0,115200n8 rw root=UUID ")
		case 1:
			b.Write(make([]byte, rng.Intn(5000)))
		case 2:
			x := make([]byte, rng.Intn(300))
			rng.Read(x)
			b.Write(x)
		default:
			b.WriteString(strings.Repeat("/usr/lib/modules ", rng.Intn(40)))
		}
	}
	return b.Bytes()[:n]
}

// run runs a tool with stdin and returns its standard output.
func runTool(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, errb.String())
	}
	return out.Bytes()
}

// gzipCases are gzip files made by GNU gzip and pigz: levels, a name and time in the header,
// several members, zeros after the last one, empty and 1-byte files.
func gzipCases(t testing.TB) map[string][]byte {
	t.Helper()
	data := deflateInput(300 << 10)
	dir := t.TempDir()
	named := filepath.Join(dir, "layer.tar")
	if err := os.WriteFile(named, data[:50000], 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, nil, "gzip", "-S", ".compressed", named)
	withName, err := os.ReadFile(named + ".compressed")
	if err != nil {
		t.Fatal(err)
	}
	g9 := runTool(t, data, "gzip", "-9", "-n")
	g1 := runTool(t, data[:7000], "gzip", "-1", "-n")
	return map[string][]byte{
		"gzip -9":            g9,
		"gzip -6 with name":  withName,
		"pigz -6":            runTool(t, data, "pigz", "-6", "-n"),
		"two members":        append(bytes.Clone(g9), g1...),
		"zeros after":        append(bytes.Clone(g1), make([]byte, 1024)...),
		"empty":              runTool(t, nil, "gzip", "-9", "-n"),
		"one byte":           runTool(t, []byte{'x'}, "gzip", "-9", "-n"),
		"go compress/gzip 9": goGzip(t, data, 9),
	}
}

func goGzip(t testing.TB, data []byte, level int) []byte {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

func gunzipAll(t testing.TB, gz []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(true)
	b, err := io.ReadAll(zr)
	if err != nil && !strings.Contains(err.Error(), "invalid header") { // zeros after the members
		t.Fatal(err)
	}
	return b
}

// gzipRecipe is blob(plain) -> gzip(recon), as the planner makes it for a gzip file.
func gzipRecipe(file, plain, recon []byte) (*Recipe, memBlobs) {
	r := &Recipe{SchemaVersion: SchemaVersion,
		Blobs: []Blob{{Digest: digestOf(plain), Size: int64(len(plain))}, {Digest: digestOf(recon), Size: int64(len(recon))}},
		Artifacts: []Artifact{{ID: "x86_64/gcp/tar.gz/disk", Name: "out.gz", Size: int64(len(file)), SHA256: hexOf(file),
			Steps: []Step{{Op: OpBlob, Blob: digestOf(plain)}, {Op: OpGzip, Blob: digestOf(recon)}}}}}
	r.DeclareFeatures()
	return r, memBlobs{digestOf(plain): plain, digestOf(recon): recon}
}

func rehydrateOne(t testing.TB, r *Recipe, blobs BlobSource) ([]byte, error) {
	t.Helper()
	doc, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if r, err = ParseRecipe(doc); err != nil { // what an image carries
		t.Fatal(err)
	}
	e := NewEngine(r, blobs, t.TempDir())
	defer e.Close()
	var out bytes.Buffer
	err = e.Rehydrate(context.Background(), r.Artifacts[0].ID, &out, nil)
	return out.Bytes(), err
}

// Every gzip file splits into the plain data gunzip gives and a small reconstruction blob,
// and the gzip op writes the very same file from the two.
func TestGzipRoundTrip(t *testing.T) {
	for name, file := range gzipCases(t) {
		t.Run(name, func(t *testing.T) {
			var plain bytes.Buffer
			recon, n, err := GzipSplit(bytes.NewReader(file), &plain)
			if err != nil {
				t.Fatal(err)
			}
			if want := gunzipAll(t, file); !bytes.Equal(plain.Bytes(), want) || n != int64(len(file)) {
				t.Fatalf("plain data: %d bytes, gunzip gives %d; %d bytes read of %d", plain.Len(), len(want), n, len(file))
			}
			if len(file) > 10000 && len(recon)*100 > len(file) {
				t.Errorf("reconstruction blob is %d bytes for a %d-byte file: over 1%%", len(recon), len(file))
			}
			var again bytes.Buffer
			if err := GzipRebuild(&again, bytes.NewReader(plain.Bytes()), recon); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again.Bytes(), file) {
				t.Fatal("GzipRebuild wrote other bytes")
			}
			r, blobs := gzipRecipe(file, plain.Bytes(), recon)
			got, err := rehydrateOne(t, r, blobs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, file) {
				t.Fatal("the gzip op wrote other bytes")
			}
		})
	}
}

// Not gzip, or cut short: an error that says so.
func TestGzipSplitRefuses(t *testing.T) {
	g := gzipCases(t)["gzip -9"]
	for name, b := range map[string][]byte{"empty": nil, "text": []byte("hello world, not gzip"), "cut": g[:len(g)/2], "no trailer": g[:len(g)-3]} {
		if _, _, err := GzipSplit(bytes.NewReader(b), io.Discard); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A damaged blob or other plain data gives an error, never a wrong file or a panic.
func TestGzipRebuildDamaged(t *testing.T) {
	file := gzipCases(t)["two members"]
	var plain bytes.Buffer
	recon, _, err := GzipSplit(bytes.NewReader(file), &plain)
	if err != nil {
		t.Fatal(err)
	}
	p := plain.Bytes()
	changed := bytes.Clone(p)
	changed[len(changed)/3] ^= 1
	for name, c := range map[string]struct{ plain, recon []byte }{
		"changed plain": {changed, recon},
		"short plain":   {p[:len(p)-1], recon},
		"long plain":    {append(bytes.Clone(p), 0), recon},
		"cut blob":      {p, recon[:len(recon)-5]},
		"no magic":      {p, append([]byte("XGZ\x01"), recon[4:]...)},
	} {
		var out bytes.Buffer
		if err := GzipRebuild(&out, bytes.NewReader(c.plain), c.recon); err == nil && bytes.Equal(out.Bytes(), file) == false {
			t.Errorf("%s: no error, and other bytes", name)
		} else if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for i := range recon {
		d := bytes.Clone(recon)
		d[i] ^= 0x55
		var out bytes.Buffer
		if err := GzipRebuild(&out, bytes.NewReader(p), d); err == nil && !bytes.Equal(out.Bytes(), file) {
			t.Fatalf("blob byte %d damaged: no error and a wrong file", i)
		}
	}
}

func FuzzGzipBlob(f *testing.F) {
	for _, file := range gzipCases(f) {
		var plain bytes.Buffer
		recon, _, err := GzipSplit(bytes.NewReader(file), &plain)
		if err != nil {
			f.Fatal(err)
		}
		if plain.Len() < 4096 {
			f.Add(recon, plain.Bytes())
		}
		f.Add(file, []byte("x")) // GzipSplit's input as a blob: refused
	}
	f.Fuzz(func(t *testing.T, blob, plain []byte) {
		GzipRebuild(io.Discard, bytes.NewReader(plain), blob)
		GzipSplit(bytes.NewReader(blob), io.Discard)
	})
}

// tarWithBig makes a tar like osbuild's oci-archive stage (GNU tar, posix, sorted) of a big
// member and two small JSON files.
func tarWithBig(t testing.TB, big []byte) ([]byte, string) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "blobs", "sha256"), 0o755)
	name := "blobs/sha256/" + hexOf(big)
	for p, b := range map[string][]byte{name: big, "index.json": []byte(`{"schemaVersion": 2, "manifests": []}`), "oci-layout": []byte(`{"imageLayoutVersion": "1.0.0"}`)} {
		if err := os.WriteFile(filepath.Join(tree, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "a.tar")
	if o, err := exec.Command("tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--format=posix",
		"--mtime=@1700000000", "--pax-option", "delete=atime,delete=ctime", "-cf", out, "-C", tree, "blobs", "index.json", "oci-layout").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, o)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b, name
}

// The ociarchive op writes GNU tar's archive again from its layout and the big member.
func TestOCIArchiveOp(t *testing.T) {
	big := deflateInput(2<<20 + 77)
	file, name := tarWithBig(t, big)
	a, err := ociarchive.Open(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := a.Layout(name)
	if err != nil {
		t.Fatal(err)
	}
	c := formatCase{"kubevirt", file, big, mustStep(t, OpOCIArchive, l)}
	r, blobs := recipeFor(c, big)
	got, err := rehydrateOne(t, r, blobs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, file) {
		t.Fatal("ociarchive wrote other bytes than GNU tar")
	}
	for what, g := range map[string][]byte{"short": big[:len(big)-1], "long": append(bytes.Clone(big), 1)} {
		r, blobs := recipeFor(c, g)
		if _, err := rehydrateOne(t, r, blobs); err == nil {
			t.Errorf("member %s: accepted", what)
		}
	}
	// A layout with no external member, or two, is refused when the recipe is read.
	all, _ := a.Layout()
	two := *l
	two.Members = append([]ociarchive.LayoutMember(nil), l.Members...)
	for i := range two.Members {
		two.Members[i].External, two.Members[i].Data = true, nil
	}
	for what, bad := range map[string]*ociarchive.Layout{"none": all, "all": &two} {
		s := mustStep(t, OpOCIArchive, bad)
		if _, _, err := s.decode(); err == nil {
			t.Errorf("layout with %s external: accepted", what)
		}
	}
}

// qemuCompressed makes a qcow2 with compressed clusters from guest, as nutanix's is made.
func qemuCompressed(t testing.TB, guest []byte, opts ...string) []byte {
	dir := t.TempDir()
	raw, out := filepath.Join(dir, "g.raw"), filepath.Join(dir, "g.qcow2")
	if err := os.WriteFile(raw, guest, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"convert", "-f", "raw", "-O", "qcow2", "-c"}, opts...)
	if o, err := exec.Command("qemu-img", append(args, raw, out)...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, o)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// qcow2-compressed writes qemu-img convert -c's file again from the guest and the plan.
func TestQcow2Compressed(t *testing.T) {
	guest := make([]byte, 5<<20+4096) // not a whole number of clusters
	copy(guest, deflateInput(1<<20))
	rand.New(rand.NewSource(3)).Read(guest[2<<20 : 2<<20+70000]) // incompressible: stored uncompressed by qemu
	copy(guest[4<<20:], deflateInput(1<<20+4096))
	for _, opts := range [][]string{{"-o", "compat=1.1"}, {"-o", "compat=0.10,cluster_size=4096"}} {
		t.Run(strings.Join(opts, " "), func(t *testing.T) {
			file := qemuCompressed(t, guest, opts...)
			blob, st, err := SplitQcow2c(context.Background(), bytes.NewReader(file), int64(len(file)), 2)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes: %+v, plan %d bytes", len(file), st, len(blob))
			if st.Clusters == 0 || st.Rebuilt == 0 || st.Raw == 0 {
				t.Fatalf("%+v: no compressed cluster rebuilt, or no uncompressed one copied", st)
			}
			plan, err := ParseQcow2c(blob)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d clusters out of guest order", plan.OutOfOrder())
			c := formatCase{"nutanix", file, guest, Step{Op: OpQcow2Compressed, Blob: digestOf(blob)}}
			r, blobs := recipeFor(c, guest)
			r.Blobs = append(r.Blobs, Blob{Digest: digestOf(blob), Size: int64(len(blob))})
			blobs[digestOf(blob)] = blob
			got, err := rehydrateOne(t, r, blobs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, file) {
				t.Fatal("qcow2-compressed wrote other bytes than qemu-img")
			}
			changed := bytes.Clone(guest)
			changed[100] ^= 1
			r, blobs = recipeFor(c, changed)
			r.Blobs = append(r.Blobs, Blob{Digest: digestOf(blob), Size: int64(len(blob))})
			blobs[digestOf(blob)] = blob
			if _, err := rehydrateOne(t, r, blobs); err == nil {
				t.Error("a changed guest: accepted")
			}
		})
	}
	if _, _, err := SplitQcow2c(context.Background(), bytes.NewReader([]byte("QFI\xfbnot really")), 14, 1); err == nil {
		t.Error("a damaged qcow2: accepted")
	}
}

func FuzzQcow2cPlan(f *testing.F) {
	p, _ := EncodeQcow2c(1<<20, 1<<20, 16, []Qcow2cVerbatim{{Host: 0, Data: []byte("QFI\xfb")}}, []Qcow2cPiece{{Host: 70000, Cluster: 3, Stream: 40, Recon: []byte("RFL\x01...")}})
	f.Add(p, []byte("guest"))
	f.Add([]byte(qcMagic), []byte{})
	f.Fuzz(func(t *testing.T, blob, guest []byte) {
		plan, err := ParseQcow2c(blob)
		if err != nil || plan.FileSize > 4<<20 {
			return
		}
		plan.Write(io.Discard, bytes.NewReader(guest), 2)
	})
}

// The plan lists its items in file order; a plan that does not is refused.
func TestQcow2cPlanRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		v []Qcow2cVerbatim
		p []Qcow2cPiece
	}{
		"overlap":      {[]Qcow2cVerbatim{{Host: 0, Data: make([]byte, 100)}}, []Qcow2cPiece{{Host: 50, Cluster: 0, Stream: 10}}},
		"twice":        {nil, []Qcow2cPiece{{Host: 50, Cluster: 2, Stream: 10}, {Host: 70, Cluster: 2, Stream: 10}}},
		"past guest":   {nil, []Qcow2cPiece{{Host: 50, Cluster: 16, Stream: 10}}},
		"past the end": {[]Qcow2cVerbatim{{Host: 1<<20 - 2, Data: make([]byte, 4)}}, nil},
	} {
		if _, err := EncodeQcow2c(1<<20, 1<<20, 16, c.v, c.p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	b, _ := json.Marshal(1) // not a plan
	if _, err := ParseQcow2c(b); err == nil {
		t.Error("not a plan: accepted")
	}
}

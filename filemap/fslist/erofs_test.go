package fslist

import (
	"bytes"
	"fmt"
	"github.com/rehydrator/rehydrator/erofs"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/erofsprecomp"
	"github.com/rehydrator/rehydrator/filemap"
)

// erofsUtilsBin is where scripts/build-erofs-utils.sh installs erofs-utils 1.8.6 (the one with
// LZMA); EROFS_UTILS_BIN overrides it.
const erofsUtilsBin = "/var/cache/rehydrator-tools/erofs-utils-1.8.6/bin"

func mkfsErofs(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("EROFS_UTILS_BIN")
	if dir == "" {
		dir = erofsUtilsBin
	}
	p := filepath.Join(dir, "mkfs.erofs")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s missing (%v): run scripts/build-erofs-utils.sh (scripts/setup-debian.sh does) or set EROFS_UTILS_BIN", p, err)
	}
	return p
}

var words = strings.Fields(`the of and to in is that for it as was with be by on not he this are or
	his from at which but have an they you were her she there been one all we their has would when
	if so no will more can out up other into what could time only new some about these two may`)

func text(r *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// erofsTree writes a small /usr-like tree: many files under 4 KiB (fragments, inline tails),
// some of a few blocks, duplicates (dedupe), incompressible ones (clusters stored plain), a
// large text and an empty file. It returns the files' contents by path.
func erofsTree(t testing.TB) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	want := map[string][]byte{}
	r := rand.New(rand.NewPCG(12, 44))
	put := func(p string, b []byte) {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
		want[p] = b
	}
	for i := range 200 {
		put(fmt.Sprintf("share/doc/p%03d/README", i), text(r, 1+r.IntN(4000)))
	}
	for i := range 30 {
		put(fmt.Sprintf("lib/python/m%02d.py", i), text(r, 4096+r.IntN(40000)))
	}
	for i := range 8 {
		b := make([]byte, 1+r.IntN(30000))
		for k := range b {
			b[k] = byte(r.Uint32())
		}
		put(fmt.Sprintf("lib/rand%d.bin", i), b)
	}
	shared := text(r, 70000)
	put("bin/tool", shared)
	put("bin/tool-copy", shared)
	put("bin/tool-prefix", shared[:50000])
	put("share/large.txt", text(r, 600<<10))
	put("etc/empty", nil)
	return dir, want
}

// TestEROFS lists the files of mkfs.erofs images and checks that every listed extent's bytes
// in the expanded stream are the file's, and that expanded data is found: small files packed
// in fragments and tails, dedupe'd clusters, plain blocks.
func TestEROFS(t *testing.T) {
	mkfs := mkfsErofs(t)
	dir, want := erofsTree(t)
	// features: superblock bits the image must have; shared: clusters two files share (dedupe).
	// With -Efragments, mkfs.erofs 1.8.6 puts tails in fragments, not ztailpacking.
	cases := []struct {
		name     string
		args     []string
		features uint32
		shared   bool
	}{
		{"plain", nil, 0, false},
		{"all", []string{"-zlzma,level=6", "-Efragments,dedupe,ztailpacking", "-C65536"}, erofs.FeatureIncompatFragments, true},
		{"fcos", []string{"-zlzma,level=6", "-Efragments", "-C1048576"}, erofs.FeatureIncompatFragments, false},
		{"ztailpacking", []string{"-zlzma,level=6", "-Eztailpacking", "-C16384"}, erofs.FeatureIncompatZtailpacking, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "img.erofs")
			a := append([]string{"--quiet", "-T1700000000", "-U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f"}, tc.args...)
			a = append(a, out, dir)
			if b, err := exec.Command(mkfs, a...).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.erofs %s: %v: %s", strings.Join(a, " "), err, b)
			}
			img, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			// The image sits after other bytes in the original, and its expanded stream after
			// other bytes in the expanded one.
			const off, at = 6000, 123
			orig := append(make([]byte, off), img...)
			size := int64(len(img))
			plan, err := erofsprecomp.Scan(bytes.NewReader(img), size, 2)
			if err != nil {
				t.Fatal(err)
			}
			if tc.args != nil && (plan.Seen == 0 || len(plan.Clusters) != plan.Seen) {
				t.Fatalf("%d of %d LZMA clusters reproduce: the test wants all", len(plan.Clusters), plan.Seen)
			}
			var x bytes.Buffer
			x.Write(bytes.Repeat([]byte{0xa5}, at))
			if err := erofsprecomp.Expand(&x, bytes.NewReader(img), size, plan); err != nil {
				t.Fatal(err)
			}
			files, err := EROFS(bytes.NewReader(orig), off, size, plan, at)
			if err != nil {
				t.Fatal(err)
			}
			// The layouts the case is for.
			im, err := erofs.Open(bytes.NewReader(img))
			if err != nil {
				t.Fatal(err)
			}
			if f := im.Superblock().FeatureIncompat; f&tc.features != tc.features {
				t.Errorf("image features %#x: want %#x", f, tc.features)
			}
			if tc.shared {
				owner := map[int64]string{}
				shared := 0
				for _, f := range files {
					for _, e := range f.Extents {
						if o, ok := owner[e.Offset]; ok && o != f.Path {
							shared++
						}
						owner[e.Offset] = f.Path
					}
				}
				if shared == 0 {
					t.Errorf("no two files listed on the same bytes: want dedupe'd clusters")
				}
			}
			mapped := checkListed(t, files, want, x.Bytes())
			if mapped != total(want) {
				t.Errorf("%d of %d file bytes located: every cluster was expanded, so all should be", mapped, total(want))
			}
			if tc.args == nil {
				return
			}
			// Clusters left compressed: their bytes have no extent, the others still do (the
			// expanded stream need not restore: implicit lookaheads now read compressed bytes).
			half := &erofsprecomp.Plan{Params: plan.Params, Seen: plan.Seen}
			for i, c := range plan.Clusters {
				if i%2 == 1 {
					half.Clusters = append(half.Clusters, c)
				}
			}
			x.Reset()
			x.Write(bytes.Repeat([]byte{0x5a}, at))
			if err := erofsprecomp.Expand(&x, bytes.NewReader(img), size, half); err != nil {
				t.Fatal(err)
			}
			if files, err = EROFS(bytes.NewReader(orig), off, size, half, at); err != nil {
				t.Fatal(err)
			}
			if m := checkListed(t, files, want, x.Bytes()); m >= mapped {
				t.Errorf("half the clusters expanded: %d bytes located, all of them: %d", m, mapped)
			}
		})
	}
}

func total(want map[string][]byte) int64 {
	var n int64
	for _, b := range want {
		n += int64(len(b))
	}
	return n
}

// checkListed checks files against the tree's contents (every listed extent holds the file's
// bytes in x) and returns how many file bytes it locates.
func checkListed(t *testing.T, files []filemap.File, want map[string][]byte, x []byte) int64 {
	t.Helper()
	if len(files) != len(want) {
		t.Errorf("%d files listed, the tree has %d", len(files), len(want))
	}
	var total, mapped int64
	wholeSmall, small := 0, 0
	for _, f := range files {
		w, ok := want[f.Path]
		if !ok {
			t.Errorf("listed %q, not in the tree", f.Path)
			continue
		}
		if f.Size != int64(len(w)) {
			t.Errorf("%s: size %d, want %d", f.Path, f.Size, len(w))
		}
		var n int64
		for _, e := range f.Extents {
			if e.FileOffset < 0 || e.Length <= 0 || e.FileOffset+e.Length > int64(len(w)) || e.Offset < 0 || e.Offset+e.Length > int64(len(x)) {
				t.Fatalf("%s: extent %+v out of range (file %d, stream %d bytes)", f.Path, e, len(w), len(x))
			}
			if !bytes.Equal(x[e.Offset:e.Offset+e.Length], w[e.FileOffset:e.FileOffset+e.Length]) {
				t.Fatalf("%s: extent %+v does not hold the file's bytes", f.Path, e)
			}
			n += e.Length
		}
		total += f.Size
		mapped += n
		if f.Size > 0 && f.Size < 4096 {
			small++
			if n == f.Size {
				wholeSmall++
			}
		}
	}
	t.Logf("%d files, %d of %d bytes located; %d of %d files under 4 KiB whole", len(files), mapped, total, wholeSmall, small)
	return mapped
}

// fuzzPlan makes a plan that expands every compressed cluster of an image as if it reproduced
// (Plain: the most any extent takes of it), without compressing anything: Scan is too slow
// for a fuzz body, and the lister only needs the layout.
func fuzzPlan(img []byte) *erofsprecomp.Plan {
	im, err := erofs.Open(bytes.NewReader(img))
	if err != nil {
		return nil
	}
	byOff := map[int64]*erofsprecomp.Cluster{}
	add := func(in *erofs.Inode) {
		ext, err := im.Extents(in)
		if err != nil {
			return
		}
		for _, e := range ext {
			if e.Kind != erofs.Compressed || e.PhysLength <= 0 {
				continue
			}
			c := byOff[e.PhysOffset]
			if c == nil {
				c = &erofsprecomp.Cluster{Offset: e.PhysOffset, Length: e.PhysLength, Stream: e.PhysLength}
				byOff[e.PhysOffset] = c
			}
			c.Plain = max(c.Plain, e.Length)
		}
	}
	n := 0
	im.Walk(func(_ string, in *erofs.Inode) error {
		if n++; n > 500 {
			return io.EOF
		}
		add(in)
		return nil
	})
	if p, err := im.Packed(); err == nil && p != nil {
		add(p)
	}
	plan := &erofsprecomp.Plan{}
	for _, c := range byOff {
		plan.Clusters = append(plan.Clusters, *c)
	}
	sort.Slice(plan.Clusters, func(i, j int) bool { return plan.Clusters[i].Offset < plan.Clusters[j].Offset })
	keep := plan.Clusters[:0]
	var end int64
	for _, c := range plan.Clusters {
		if c.Offset >= end {
			keep = append(keep, c)
			end = c.Offset + c.Length
		}
	}
	plan.Clusters = keep
	return plan
}

// FuzzEROFS: damaged images give errors or extents inside their file and the expanded stream,
// never a panic.
func FuzzEROFS(f *testing.F) {
	mkfs := mkfsErofs(f)
	dir := f.TempDir()
	src := filepath.Join(dir, "src")
	r := rand.New(rand.NewPCG(3, 4))
	for p, n := range map[string]int{"a.txt": 9000, "b/c.txt": 300, "b/d.txt": 300, "b/e/f.txt": 20000, "g": 0} {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), text(r, n), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	for i, args := range [][]string{
		nil,
		{"--chunksize=4096"},
		{"-zlzma", "-Efragments", "-C8192"},
		{"-zlzma", "-Eztailpacking,dedupe"},
		{"-zlzma,level=6", "-Efragments,dedupe,ztailpacking", "-C16384"},
	} {
		img := filepath.Join(dir, fmt.Sprintf("%d.erofs", i))
		a := append([]string{"--quiet", "-T0", "-U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f"}, args...)
		if out, err := exec.Command(mkfs, append(a, img, src)...).CombinedOutput(); err != nil {
			f.Fatalf("mkfs.erofs %v: %v: %s", args, err, out)
		}
		b, err := os.ReadFile(img)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		for k := 0; k < 6; k++ {
			d := bytes.Clone(b)
			for j := 0; j < 1+k; j++ {
				d[4096+r.IntN(len(d)-4096)] = byte(r.Uint32())
			}
			f.Add(d)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		size := int64(len(data))
		for _, plan := range []*erofsprecomp.Plan{nil, fuzzPlan(data)} {
			const at = 7
			files, err := EROFS(bytes.NewReader(data), 0, size, plan, at)
			if err != nil {
				continue
			}
			xsize := size
			if plan != nil {
				xsize = plan.ExpandedSize(size)
			}
			for _, f := range files {
				for _, e := range f.Extents {
					if e.Length <= 0 || e.FileOffset < 0 || e.FileOffset+e.Length > f.Size || e.Offset < at || e.Offset+e.Length > at+xsize {
						t.Fatalf("%s (%d bytes): extent %+v outside the file or the %d-byte stream", f.Path, f.Size, e, xsize)
					}
				}
			}
		}
	})
}

package erofs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzSeeds makes tiny images of a tiny tree with the layouts the reader knows, plus damaged
// copies of each (bytes changed after the superblock's block, which its checksum covers).
func fuzzSeeds(t testing.TB) [][]byte {
	mkfs := tool(t, "mkfs.erofs")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	r := rand.New(rand.NewPCG(5, 6))
	files := map[string][]byte{
		"a.txt":         textBytes(r, 9000),
		"b/c.txt":       textBytes(r, 300),
		"b/d.bin":       randBytes(r, 5000),
		"b/e/f/g/h.txt": textBytes(r, 20000),
		"empty":         nil,
	}
	for p, d := range files {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), d, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	var seeds [][]byte
	for i, args := range [][]string{
		nil,
		{"--chunksize=4096"},
		{"-zlzma", "-C8192"},
		{"-zlzma", "-Efragments"},
		{"-zlzma", "-Eztailpacking,dedupe"},
		{"-zlzma", "-Elegacy-compress", "-Eforce-inode-extended"},
		{"-zlz4hc", "-C16384", "-Eztailpacking"},
		{"-zdeflate", "-Efragments,dedupe"},
	} {
		img := filepath.Join(dir, fmt.Sprintf("%d.erofs", i))
		a := append([]string{"--quiet", "-T0", "-U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f"}, args...)
		if out, err := exec.Command(mkfs, append(a, img, src)...).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.erofs %v: %v: %s", args, err, out)
		}
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
		seeds = append(seeds, b[:len(b)*2/3])
		for k := 0; k < 12; k++ {
			d := bytes.Clone(b)
			for j := 0; j < 1+k; j++ {
				d[4096+r.IntN(len(d)-4096)] = byte(r.Uint32())
			}
			seeds = append(seeds, d)
		}
	}
	return seeds
}

// FuzzImage: damaged images give errors, never a panic, a hang or extents that do not cover
// their file exactly.
func FuzzImage(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, data []byte) {
	{
		im, err := Open(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) && !strings.Contains(err.Error(), "EOF") {
				t.Fatalf("open error of no known kind: %v", err)
			}
			return
		}
		reads := 0
		check := func(in *Inode) {
			ext, err := im.Extents(in)
			if err != nil {
				return
			}
			var pos int64
			for _, e := range ext {
				if e.FileOffset != pos || e.Length <= 0 {
					t.Fatalf("inode %d: extent %+v at %d", in.Nid, e, pos)
				}
				pos += e.Length
			}
			if in.HasData() && in.Size > 0 && pos != int64(in.Size) {
				t.Fatalf("inode %d: extents cover %d of %d", in.Nid, pos, in.Size)
			}
			if in.IsRegular() && reads < 50 {
				reads++
				r, err := im.Open(in)
				if err == nil {
					io.CopyN(io.Discard, r, 64<<10)
				}
			}
		}
		if p, err := im.Packed(); err == nil && p != nil {
			check(p)
		}
		n := 0
		im.Walk(func(p string, in *Inode) error {
			if n++; n > 500 {
				return io.EOF
			}
			check(in)
			return nil
		})
	}
}

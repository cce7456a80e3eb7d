package xfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/rehydrator/rehydrator/internal/testtree"
)

// proto writes an mkfs.xfs prototype file for the tree at dir, as tests/fixtures writeProto does.
func proto(t testing.TB, dir string) string {
	b, err := testtree.Proto(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "proto")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mkfs(t testing.TB, tree string, size int64, args ...string) []byte {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	a := append([]string{"-q", "-L", "root"}, args...)
	if out, err := exec.Command("mkfs.xfs", append(a, "-p", proto(t, tree), img)...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs %v: %v\n%s", args, err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWalkMatchesTree(t *testing.T) {
	tree := t.TempDir()
	files, err := testtree.Write(tree, testtree.Spec{Seed: 6, Small: 300, Medium: 12, Large: 2, BigDir: 3000, Special: true})
	if err != nil {
		t.Fatal(err)
	}
	// A directory of 300 entries: a few data blocks and one leaf block (leaf format), beside
	// BigDir's node format, the block format of middle-sized and the shortform of small ones.
	for i := range 300 {
		rel := fmt.Sprintf("leafdir/entry-%04d", i)
		os.MkdirAll(filepath.Join(tree, "leafdir"), 0o755)
		if err := os.WriteFile(filepath.Join(tree, rel), []byte(rel), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, rel)
	}
	sort.Strings(files)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"v5-512", []string{"-d", "agcount=2"}},
		{"v5-4k-sectors", []string{"-d", "agcount=2", "-s", "size=4096"}},
		{"v5-8k-dirblocks-1k-blocks", []string{"-d", "agcount=4", "-b", "size=1024", "-n", "size=8192"}},
		{"v4", []string{"-d", "agcount=2", "-m", "crc=0"}},
		{"v5-nrext64", []string{"-d", "agcount=2", "-i", "nrext64=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkfs(t, tree, 320<<20, tc.args...)
			f, err := Open(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			links := 0
			err = f.Walk(func(e Entry) error {
				switch {
				case e.Mode.IsRegular():
					got = append(got, e.Path)
					want, err := os.ReadFile(filepath.Join(tree, e.Path))
					if err != nil {
						t.Fatal(err)
					}
					have := make([]byte, e.Size)
					for _, x := range e.Extents {
						if !x.Unwritten {
							copy(have[x.FileOffset:], img[x.Offset:x.Offset+x.Length])
						}
					}
					if !bytes.Equal(have, want) {
						t.Fatalf("%s: content from the extents differs from the tree", e.Path)
					}
				case e.Mode&fs.ModeSymlink != 0:
					want, _ := os.Readlink(filepath.Join(tree, e.Path))
					if e.Link != want {
						t.Errorf("%s -> %q, want %q", e.Path, e.Link, want)
					}
					links++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(got)
			if len(got) != len(files) || links != 2 {
				t.Fatalf("%d files and %d symlinks, want %d and 2", len(got), links, len(files))
			}
			for i := range got {
				if got[i] != files[i] {
					t.Fatalf("file %d: %s, want %s", i, got[i], files[i])
				}
			}
		})
	}
}

func smallImage(t testing.TB) []byte {
	tree := t.TempDir()
	if _, err := testtree.Write(tree, testtree.Spec{Seed: 9, Small: 20, Medium: 2, BigDir: 200, Special: true}); err != nil {
		t.Fatal(err)
	}
	return mkfs(t, tree, 300<<20, "-d", "agcount=2")
}

// padded reads b followed by zeros up to size: a fuzz input is the head of an image.
type padded struct {
	b    []byte
	size int64
	max  int64          // the end of the furthest read
	read map[int64]bool // the 4 KiB blocks read
}

func (p *padded) ReadAt(out []byte, off int64) (int, error) {
	p.max = max(p.max, off+int64(len(out)))
	if p.read != nil {
		for o := off &^ 4095; o < off+int64(len(out)); o += 4096 {
			p.read[o] = true
		}
	}
	clear(out)
	if off < int64(len(p.b)) {
		copy(out, p.b[off:])
	}
	return len(out), nil
}

// sparseImage is a fuzz input: records of an 8-byte big-endian offset and a 4 KiB block, the
// blocks of an image of imageSize bytes that are not zero.
type sparseImage map[int64][]byte

func decodeSparse(b []byte) sparseImage {
	m := sparseImage{}
	for len(b) >= 8 {
		off := int64(be.Uint64(b) % imageSize &^ 4095)
		blk := b[8:min(len(b), 8+4096)]
		m[off] = blk
		b = b[8+len(blk):]
	}
	return m
}

func (m sparseImage) ReadAt(out []byte, off int64) (int, error) {
	clear(out)
	for o := off &^ 4095; o < off+int64(len(out)); o += 4096 {
		if blk, ok := m[o]; ok {
			lo, hi := max(o, off), min(o+int64(len(blk)), off+int64(len(out)))
			if lo < hi {
				copy(out[lo-off:hi-off], blk[lo-o:hi-o])
			}
		}
	}
	return len(out), nil
}

const imageSize = 300 << 20

func list(b []byte) error {
	_, err := listPadded(b)
	return err
}

func listPadded(b []byte) (int64, error) {
	r := &padded{b: b, size: imageSize}
	f, err := Open(r, max(int64(len(b)), imageSize))
	if err != nil {
		return 0, err
	}
	err = f.Walk(func(Entry) error { return nil })
	return r.max, err
}

// Corruptions of a small image's metadata give an error or a listing, never a panic or a hang.
func TestHostile(t *testing.T) {
	img := smallImage(t)
	head, err := listPadded(img)
	if err != nil {
		t.Fatal(err)
	}
	img = img[:head]
	blocks := metadataBlocks(t, img)
	t.Logf("%d metadata blocks in the first %d bytes", len(blocks), head)
	for _, o := range blocks {
		for i := o; i < min(o+4096, head); i += 23 {
			for _, v := range []byte{0, 0xFF, img[i] ^ 0x21} {
				if v == img[i] {
					continue
				}
				old := img[i]
				img[i] = v
				list(img)
				img[i] = old
			}
		}
	}
	if _, err := Open(bytes.NewReader(img[:4096]), 4096); err != nil {
		t.Fatal(err)
	}
	f, _ := Open(bytes.NewReader(img[:4096]), 4096)
	if err := f.Walk(func(Entry) error { return nil }); err == nil {
		t.Fatal("truncated image accepted")
	}
	if err := list(make([]byte, 8192)); !errors.Is(err, ErrNotXFS) {
		t.Fatalf("zeros: %v", err)
	}
}

func FuzzWalk(f *testing.F) {
	img := smallImage(f)
	// The seed: the blocks a walk reads, as a sparse image (the rest reads as zeros).
	r := &padded{b: img, size: imageSize, read: map[int64]bool{}}
	fsys, err := Open(r, imageSize)
	if err != nil {
		f.Fatal(err)
	}
	if err := fsys.Walk(func(Entry) error { return nil }); err != nil {
		f.Fatal(err)
	}
	var offs []int64
	for o := range r.read {
		offs = append(offs, o)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	var seed []byte
	for _, o := range offs {
		seed = be.AppendUint64(seed, uint64(o))
		seed = append(seed, img[o:o+4096]...)
	}
	sp := decodeSparse(seed)
	if fsys, err = Open(sp, imageSize); err != nil || fsys.Walk(func(Entry) error { return nil }) != nil {
		f.Fatalf("the sparse seed does not walk: %v", err)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		fsys, err := Open(decodeSparse(b), imageSize)
		if err == nil {
			fsys.Walk(func(Entry) error { return nil })
		}
	})
}

// metadataBlocks returns the offsets of the blocks of an image that are neither file data nor
// zeros: the superblock, inodes, directories, btrees, the bytes worth corrupting.
func metadataBlocks(t testing.TB, img []byte) []int64 {
	f, err := Open(&padded{b: img, size: imageSize}, imageSize)
	if err != nil {
		t.Fatal(err)
	}
	bs := f.Super.BlockSize
	data := map[int64]bool{}
	f.Walk(func(e Entry) error {
		for _, x := range e.Extents {
			for o := x.Offset / bs * bs; o < x.Offset+x.Length; o += bs {
				data[o] = true
			}
		}
		return nil
	})
	var out []int64
	zero := make([]byte, bs)
	for o := int64(0); o+bs <= int64(len(img)); o += bs {
		if !data[o] && !bytes.Equal(img[o:o+bs], zero) {
			out = append(out, o)
		}
	}
	return out
}

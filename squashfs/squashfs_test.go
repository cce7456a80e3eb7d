package squashfs

import (
	"bytes"
	"compress/zlib"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/rehydrator/rehydrator/internal/testtree"
)

func mksquashfs(t testing.TB, tree string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatalf("mksquashfs is needed (squashfs-tools): %v", err)
	}
	img := filepath.Join(t.TempDir(), "root.squashfs")
	cmd := exec.Command("mksquashfs", append([]string{tree, img, "-noappend", "-no-progress", "-quiet", "-all-root", "-processors", "1"}, args...)...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SOURCE_DATE_EPOCH=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return img
}

// readPieces rebuilds a file from its pieces, decompressing the blocks (as the expanded image
// will have them).
func readPieces(t *testing.T, img []byte, comp uint16, e Entry, blockSize int64, blocks map[int64][]byte) []byte {
	t.Helper()
	out := make([]byte, e.Size)
	for _, p := range e.Pieces {
		var src []byte
		if c, ok := blocks[p.Offset]; ok && p.InFrame {
			src = c[p.Within : p.Within+p.Length]
		} else if p.InFrame {
			// The stored length is not in the piece: decode the longest prefix that works.
			end := min(int64(len(img)), p.Offset+blockSize+64)
			var content []byte
			var err error
			if comp == Zstd {
				// The frame's end is not known here: stream it and stop at its content size.
				r, _ := zstd.NewReader(bytes.NewReader(img[p.Offset:end]), zstd.WithDecoderConcurrency(1))
				content, err = io.ReadAll(io.LimitReader(r, blockSize))
				r.Close()
			} else {
				zr, zerr := zlib.NewReader(bytes.NewReader(img[p.Offset:end]))
				if zerr != nil {
					t.Fatalf("%s: %v", e.Path, zerr)
				}
				content, err = io.ReadAll(zr)
			}
			if err != nil && len(content) < int(p.Within+p.Length) {
				t.Fatalf("%s: block at %d: %v", e.Path, p.Offset, err)
			}
			blocks[p.Offset] = content
			src = content[p.Within : p.Within+p.Length]
		} else {
			src = img[p.Offset+p.Within : p.Offset+p.Within+p.Length]
		}
		copy(out[p.FileOffset:], src)
	}
	return out
}

func TestWalkMatchesTree(t *testing.T) {
	tree := t.TempDir()
	files, err := testtree.Write(tree, testtree.Spec{Seed: 3, Small: 300, Medium: 12, Large: 2, BigDir: 1500, Sparse: true, Special: true})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"zstd", []string{"-comp", "zstd"}},
		{"gzip-4k", []string{"-comp", "gzip", "-b", "4096"}},
		{"uncompressed", []string{"-noI", "-noD", "-noF", "-noX"}},
		{"zstd-nofrag", []string{"-comp", "zstd", "-no-fragments"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := mksquashfs(t, tree, tc.args...)
			img, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			rd, err := Open(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			var got []string
			links := 0
			blocks := map[int64][]byte{}
			err = rd.Walk(func(e Entry) error {
				switch {
				case e.Mode.IsRegular():
					got = append(got, e.Path)
					want, err := os.ReadFile(filepath.Join(tree, e.Path))
					if err != nil {
						t.Fatal(err)
					}
					if have := readPieces(t, img, rd.Super.Compression, e, int64(rd.Super.BlockSize), blocks); !bytes.Equal(have, want) {
						t.Fatalf("%s: content from the pieces differs from the tree", e.Path)
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

// Every truncation and many single-byte corruptions of a small image give an error or a
// listing, never a panic or a hang.
func TestHostile(t *testing.T) {
	img := smallImage(t)
	for n := 0; n < len(img); n += 1 + n/50 {
		list(img[:n])
	}
	for i := 0; i < len(img); i += 1 + i/96*4 {
		for _, v := range []byte{0, 0xFF, img[i] ^ 0x80} {
			b := bytes.Clone(img)
			b[i] = v
			list(b)
		}
	}
	if err := list(img[:50]); !errors.Is(err, ErrNotSquashfs) && err == nil {
		t.Fatal("truncated superblock accepted")
	}
}

func list(b []byte) error {
	rd, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return err
	}
	defer rd.Close()
	return rd.Walk(func(Entry) error { return nil })
}

func smallImage(t testing.TB) []byte {
	tree := t.TempDir()
	if _, err := testtree.Write(tree, testtree.Spec{Seed: 9, Small: 12, Medium: 1, Special: true}); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(mksquashfs(t, tree, "-comp", "zstd", "-b", "4096"))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func FuzzWalk(f *testing.F) {
	f.Add(smallImage(f))
	f.Fuzz(func(t *testing.T, b []byte) {
		list(b)
	})
}

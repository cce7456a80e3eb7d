package ext4

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/internal/testtree"
)

func mkfs(t testing.TB, tree string, size int64, args ...string) []byte {
	t.Helper()
	htree := len(args) > 0 && args[0] == "htree"
	if htree {
		args = args[1:]
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	a := append([]string{"-q", "-F", "-E", "root_owner=0:0,nodiscard"}, args...)
	if out, err := exec.Command("mkfs.ext4", append(a, "-d", tree, img)...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %v: %v\n%s", args, err, out)
	}
	if htree {
		// e2fsck -D rebuilds every directory, indexing (htree) those of more than one block.
		if out, err := exec.Command("e2fsck", "-fyD", img).CombinedOutput(); err != nil && !strings.Contains(string(out), "MODIFIED") {
			t.Fatalf("e2fsck -fyD: %v\n%s", err, out)
		}
		out, err := exec.Command("debugfs", "-R", "htree /usr/share/locale/big", img).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Root node dump") {
			t.Fatalf("the big directory is not indexed after e2fsck -D: %v\n%.300s", err, out)
		}
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWalkMatchesTree(t *testing.T) {
	tree := t.TempDir()
	files, err := testtree.Write(tree, testtree.Spec{Seed: 5, Small: 300, Medium: 12, Large: 2, BigDir: 1500, Sparse: true, Special: true})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ext4-4k", []string{"-b", "4096"}},
		{"ext4-4k-htree", []string{"htree", "-b", "4096"}},
		{"ext4-1k", []string{"-b", "1024"}},
		{"ext2-blockmap", []string{"-t", "ext2", "-b", "1024"}},
		{"ext4-64bit-flex", []string{"-b", "4096", "-O", "64bit,metadata_csum", "-G", "4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := mkfs(t, tree, 64<<20, tc.args...)
			f, err := Open(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			links := 0
			err = f.Walk(func(e Entry) error {
				switch {
				case e.Path == "lost+found":
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
					if e.Path == "var/sparse.img" && len(e.Extents) < 3 {
						t.Errorf("sparse file in %d extents", len(e.Extents))
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
			// Lookups follow symlinks.
			b, err := f.ReadFile("/etc/link")
			want, _ := os.ReadFile(filepath.Join(tree, "etc/dup-a"))
			if err != nil || !bytes.Equal(b, want) {
				t.Fatalf("ReadFile(etc/link): %v", err)
			}
			if _, err := f.ReadFile("etc/nothing"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("missing file: %v", err)
			}
			ents, err := f.ReadDir("etc/sub/..")
			if err != nil || len(ents) < 7 {
				t.Fatalf("ReadDir(etc/sub/..): %d entries, %v", len(ents), err)
			}
		})
	}
}

func smallImage(t testing.TB) []byte {
	tree := t.TempDir()
	if _, err := testtree.Write(tree, testtree.Spec{Seed: 9, Small: 20, Medium: 2, Special: true}); err != nil {
		t.Fatal(err)
	}
	return mkfs(t, tree, 1<<20, "-b", "1024", "-N", "128", "-O", "^has_journal")
}

func list(b []byte) error {
	f, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return err
	}
	return f.Walk(func(Entry) error { return nil })
}

// Corruptions of a small image give an error or a listing, never a panic or a hang.
func TestHostile(t *testing.T) {
	img := smallImage(t)
	if err := list(img); err != nil {
		t.Fatal(err)
	}
	// The metadata sits in the first blocks; file data after it matters less.
	for i := 1024; i < min(len(img), 96<<10); i += 13 {
		for _, v := range []byte{0, 0xFF, img[i] ^ 0x40} {
			if v == img[i] {
				continue
			}
			b := bytes.Clone(img)
			b[i] = v
			list(b)
		}
	}
	if err := list(img[:4096]); err == nil {
		t.Fatal("truncated image accepted")
	}
}

func FuzzWalk(f *testing.F) {
	img := smallImage(f)
	f.Add(img[:96<<10])
	f.Fuzz(func(t *testing.T, b []byte) {
		list(b)
	})
}

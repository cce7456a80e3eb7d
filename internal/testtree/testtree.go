// Package testtree writes generated directory trees for filesystem tests: many small files
// under 4 KiB (as a real /usr has: docs, locales, modules), some large ones, a large directory,
// sparse files, duplicates, hard links and symlinks. The content is text-like, so compressors
// compress it as they do real files.
package testtree

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Spec says what to write.
type Spec struct {
	Seed    int64
	Small   int // files of 1 byte to 4 KiB, spread over nested directories
	Medium  int // files of 4 to 64 KiB
	Large   int // files of 256 KiB to 2 MiB
	BigDir  int // entries of one flat directory (thousands make node-format and htree directories)
	Sparse  bool
	Special bool // symlinks, hard links, duplicates, an empty file
}

var words = []string{"the", "of", "and", "to", "in", "is", "for", "that", "with", "as", "on", "file",
	"system", "data", "block", "inode", "python", "perl", "module", "import", "def", "return",
	"locale", "message", "translation", "license", "copyright", "version", "config", "service",
	"\n", "\n", "(", ")", "=", "{", "}", "#", "0", "1", "2", "42", "usr", "lib", "share", "doc"}

// Content returns n text-like bytes from r.
func Content(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n+16)
	for len(b) < n {
		b = append(b, words[r.Intn(len(words))]...)
		b = append(b, ' ')
		if r.Intn(40) == 0 { // some binary noise, as in compiled modules
			for k := r.Intn(64); k > 0; k-- {
				b = append(b, byte(r.Intn(256)))
			}
		}
	}
	return b[:n]
}

// Write writes the tree under dir (which must exist) and returns the regular files' paths,
// relative to dir.
func Write(dir string, s Spec) ([]string, error) {
	r := rand.New(rand.NewSource(s.Seed))
	var files []string
	put := func(rel string, data []byte) error {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		files = append(files, rel)
		return os.WriteFile(p, data, 0o644)
	}
	for i := 0; i < s.Small; i++ {
		rel := fmt.Sprintf("usr/share/d%02d/s%02d/small-%05d.txt", i%37, i%11, i)
		if err := put(rel, Content(r, 1+r.Intn(4095))); err != nil {
			return nil, err
		}
	}
	for i := 0; i < s.Medium; i++ {
		if err := put(fmt.Sprintf("usr/lib/python3/m%02d/mod-%04d.py", i%13, i), Content(r, 4096+r.Intn(60<<10))); err != nil {
			return nil, err
		}
	}
	for i := 0; i < s.Large; i++ {
		if err := put(fmt.Sprintf("usr/bin/large-%03d", i), Content(r, 256<<10+r.Intn(1792<<10))); err != nil {
			return nil, err
		}
	}
	for i := 0; i < s.BigDir; i++ {
		if err := put(fmt.Sprintf("usr/share/locale/big/entry-with-a-longer-name-%06d.mo", i), Content(r, 1+r.Intn(300))); err != nil {
			return nil, err
		}
	}
	if s.Sparse {
		p := filepath.Join(dir, "var/sparse.img")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		f, err := os.Create(p)
		if err != nil {
			return nil, err
		}
		for _, off := range []int64{0, 1 << 20, 5<<20 + 4096} {
			if _, err := f.WriteAt(Content(r, 70000), off); err != nil {
				f.Close()
				return nil, err
			}
		}
		if err := f.Truncate(8 << 20); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		files = append(files, "var/sparse.img")
	}
	if s.Special {
		dup := Content(r, 3000)
		for _, rel := range []string{"etc/dup-a", "etc/dup-b", "etc/sub/dup-c"} {
			if err := put(rel, dup); err != nil {
				return nil, err
			}
		}
		if err := put("etc/empty", nil); err != nil {
			return nil, err
		}
		if err := os.Link(filepath.Join(dir, "etc/dup-a"), filepath.Join(dir, "etc/hardlink")); err != nil {
			return nil, err
		}
		files = append(files, "etc/hardlink")
		if err := os.Symlink("dup-a", filepath.Join(dir, "etc/link")); err != nil {
			return nil, err
		}
		if err := os.Symlink("../../"+string(Content(r, 200)[:0])+"usr/share/a/very/long/target/"+fmt.Sprintf("%0200d", 7), filepath.Join(dir, "etc/longlink")); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(dir, "empty/dir"), 0o755); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// Proto returns an mkfs.xfs prototype file for the tree at dir (as tests/fixtures writeProto
// writes it): every directory, regular file and symlink, owned by root. With rank, each
// directory's entries are listed in the order of rank(name) instead of by name, so mkfs.xfs -p
// lays their data out in another order.
func Proto(dir string, rank func(name string) uint64) ([]byte, error) {
	var w bytes.Buffer
	w.WriteString("/dev/null\n0 0\nd--755 0 0\n")
	var walk func(d string, depth int) error
	walk = func(d string, depth int) error {
		ents, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		if rank != nil {
			sort.SliceStable(ents, func(i, j int) bool { return rank(ents[i].Name()) < rank(ents[j].Name()) })
		}
		indent := strings.Repeat(" ", depth)
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			info, err := os.Lstat(p)
			if err != nil {
				return err
			}
			perm := fmt.Sprintf("%03o", info.Mode().Perm())
			switch {
			case info.IsDir():
				fmt.Fprintf(&w, "%s%s d--%s 0 0\n", indent, e.Name(), perm)
				if err := walk(p, depth+1); err != nil {
					return err
				}
				fmt.Fprintf(&w, "%s$\n", indent)
			case info.Mode()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				fmt.Fprintf(&w, "%s%s l--%s 0 0 %s\n", indent, e.Name(), perm, target)
			default:
				fmt.Fprintf(&w, "%s%s ---%s 0 0 %s\n", indent, e.Name(), perm, p)
			}
		}
		return nil
	}
	if err := walk(dir, 1); err != nil {
		return nil, err
	}
	w.WriteString("$\n")
	return w.Bytes(), nil
}

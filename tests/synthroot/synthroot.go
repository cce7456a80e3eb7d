// Package synthroot writes a deterministic stand-in for an operating system's /usr: ELF-like
// programs and libraries with x86 call instructions, symlinks, plain text and incompressible
// data, all from a seeded generator of our own. Fixture releases built from it
// (fixtures.Options.SourceRoots) depend on the tool versions only, not on the files of the
// machine, so their digests can be checked into the repository.
package synthroot

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Spec says what tree to write. The same Spec writes the same bytes on every machine.
type Spec struct {
	Name  string // directory name under Base; part of every staged path, so keep it fixed
	Seed  uint64
	Bytes int64 // about this many bytes of regular files
	// Compressible makes every file text of a few repeated lines: for images small enough to be
	// checked in.
	Compressible bool
}

// Base is where trees are written. The fixture builder stages each file under its absolute
// path and ranks files by a hash of that path, so the path must not depend on $TMPDIR or on
// the checkout: it is fixed.
const Base = "/var/tmp/rehydrator-synthroot"

// mtime is given to every file and directory: the fixture cache key reads the roots' times.
var mtime = time.Unix(1700000000, 0)

// Roots writes the tree unless it is already complete and returns the directories to pass as
// fixtures.Options.SourceRoots. Parallel callers are safe: each writes a private copy and
// renames it into place; the first rename wins and the copies are identical.
func Roots(s Spec) ([]string, error) {
	name := fmt.Sprintf("%s-%x-%d", s.Name, s.Seed, s.Bytes)
	if s.Compressible {
		name += "-c"
	}
	dir := filepath.Join(Base, name)
	roots := []string{filepath.Join(dir, "usr/bin"), filepath.Join(dir, "usr/lib"), filepath.Join(dir, "usr/share")}
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return roots, nil
	}
	if err := os.MkdirAll(Base, 0o755); err != nil {
		return nil, fmt.Errorf("synthroot: %w", err)
	}
	tmp, err := os.MkdirTemp(Base, ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("synthroot: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := write(tmp, s); err != nil {
		return nil, fmt.Errorf("synthroot: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, ".complete")); serr == nil {
			return roots, nil // another process won
		}
		return nil, fmt.Errorf("synthroot: %w", err)
	}
	return roots, nil
}

// rng is splitmix64: written here, not taken from math/rand, so that no Go release can change
// the tree.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rng) fill(b []byte) {
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.next())
		copy(b[i:], w[:])
	}
}

var words = strings.Fields(`the of and to in is for that with on as by this are be from or it an at
which not file system boot disk image partition kernel initramfs root device mount option default
value configuration service network interface address user group package library program command
error warning return function pointer buffer length offset sector block inode directory journal
checksum superblock extent cluster table header footer version release stream platform artifact
ignition coreos fedora ostree deployment container registry layer digest manifest signature`)

// kinds of files, with their share of the bytes.
type kind struct {
	dir      string
	ext      string
	share    int // percent
	min, max int // file size range
	make     func(r *rng, n int) []byte
}

func write(root string, s Spec) error {
	r := &rng{s: s.Seed}
	kinds := []kind{
		{"usr/bin", "", 35, 16 << 10, 1536 << 10, program},
		{"usr/lib", ".so.1", 35, 32 << 10, 3 << 20, program},
		{"usr/share/doc", ".txt", 15, 2 << 10, 256 << 10, text},
		{"usr/share/data", ".bin", 10, 8 << 10, 512 << 10, random},
		{"usr/share/misc", ".dat", 5, 4 << 10, 128 << 10, sparse},
	}
	if s.Compressible {
		kinds = []kind{
			{"usr/bin", "", 40, 64 << 10, 512 << 10, lines},
			{"usr/lib", ".so.1", 40, 64 << 10, 512 << 10, lines},
			{"usr/share/doc", ".txt", 20, 16 << 10, 128 << 10, lines},
		}
	}
	for _, k := range kinds {
		budget := s.Bytes * int64(k.share) / 100
		for i := 0; budget > 0; i++ {
			n := k.min + r.intn(k.max-k.min)
			if int64(n) > budget {
				n = int(max(budget, 1))
			}
			budget -= int64(n)
			name := fmt.Sprintf("%s%03d%s", word(r), i, k.ext)
			sub := ""
			if k.dir != "usr/bin" {
				sub = fmt.Sprintf("%s%d", words[i%7], i%7) // a few subdirectories
			}
			p := filepath.Join(root, k.dir, sub, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if k.dir == "usr/bin" || k.ext == ".so.1" {
				mode = 0o755
			}
			if err := os.WriteFile(p, k.make(r, n), mode); err != nil {
				return err
			}
			if err := os.Chmod(p, mode); err != nil { // umask-independent
				return err
			}
			if k.ext == ".so.1" { // libfoo.so -> libfoo.so.1, as a linker name
				if err := os.Symlink(name, strings.TrimSuffix(p, ".1")); err != nil {
					return err
				}
			}
		}
	}
	if err := os.WriteFile(filepath.Join(root, ".complete"), nil, 0o644); err != nil {
		return err
	}
	// Fixed times, deepest first so that setting a file's time does not touch its parent's.
	var paths []string
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		paths = append(paths, p)
		return err
	})
	if err != nil {
		return err
	}
	sort.Sort(sort.Reverse(sort.StringSlice(paths)))
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			continue
		}
		if fi.IsDir() {
			if err := os.Chmod(p, 0o755); err != nil { // umask-independent
				return err
			}
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			return err
		}
	}
	return nil
}

func word(r *rng) string { return words[r.intn(len(words))] }

// program is an ELF-like file: a header, x86-like code with CALL rel32 to a few hundred
// function starts (what the x86 filter is for), a string table and zero padding.
func program(r *rng, n int) []byte {
	b := make([]byte, 0, n)
	b = append(b, 0x7f, 'E', 'L', 'F', 2, 1, 1, 0)
	b = append(b, make([]byte, 56)...)
	codeEnd := n * 6 / 10
	nfunc := 1 + codeEnd/2048
	funcs := make([]int, nfunc)
	for i := range funcs {
		funcs[i] = r.intn(max(codeEnd, 1))
	}
	ops := []byte{0x48, 0x89, 0x8b, 0x83, 0xc3, 0x55, 0x5d, 0x31, 0xc0, 0x0f, 0x85, 0x74, 0x75, 0xff, 0x41}
	for len(b) < codeEnd {
		switch r.intn(10) {
		case 0, 1: // call a function: the target is fixed, the relative offset is not
			at := len(b) + 5
			rel := int32(funcs[r.intn(nfunc)] - at)
			b = append(b, 0xe8)
			b = binary.LittleEndian.AppendUint32(b, uint32(rel))
		case 2: // a mov with an immediate
			b = append(b, 0x48, 0xc7, 0xc0)
			b = binary.LittleEndian.AppendUint32(b, uint32(r.intn(4096)))
		default:
			for k := 1 + r.intn(4); k > 0; k-- {
				b = append(b, ops[r.intn(len(ops))])
			}
		}
	}
	for len(b) < n*9/10 {
		b = append(b, word(r)...)
		b = append(b, 0)
	}
	b = b[:min(len(b), n)]
	return append(b, make([]byte, n-len(b))...)
}

// text is lines of words: compresses about as well as documentation.
func text(r *rng, n int) []byte {
	b := make([]byte, 0, n+16)
	for len(b) < n {
		for k := 4 + r.intn(10); k > 0; k-- {
			b = append(b, word(r)...)
			b = append(b, ' ')
		}
		b[len(b)-1] = '\n'
	}
	return b[:n]
}

// random stands for compressed data (images, compressed man pages, fonts).
func random(r *rng, n int) []byte {
	b := make([]byte, n)
	r.fill(b)
	return b
}

// sparse is mostly zeros with random 4 KiB blocks: a database or a preallocated file.
func sparse(r *rng, n int) []byte {
	b := make([]byte, n)
	for off := 0; off+4096 <= n; off += 4096 {
		if r.intn(4) == 0 {
			r.fill(b[off : off+4096])
		}
	}
	return b
}

// lines repeats a few lines of text: compresses to almost nothing.
func lines(r *rng, n int) []byte {
	set := make([][]byte, 8)
	for i := range set {
		set[i] = text(r, 40+r.intn(40))
		set[i][len(set[i])-1] = '\n'
	}
	b := make([]byte, 0, n+80)
	for len(b) < n {
		b = append(b, set[r.intn(len(set))]...)
	}
	return b[:n]
}

package platformid

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// ErrNotExt4 means a partition does not hold an ext2/3/4 filesystem.
var ErrNotExt4 = errors.New("not an ext4 filesystem")

// fs is a read-only view of an ext4 filesystem: enough to find a file by path (extents or
// block maps, linear directories, symlinks).
type fs struct {
	r          io.ReaderAt
	off        int64 // of the filesystem in r
	size       int64
	blockSize  int64
	inodesPG   uint32
	inodeSize  int64
	descSize   int64
	groups     uint32
	firstBlock uint32
	is64       bool
}

const (
	rootInode  = 2
	extentsFl  = 0x80000
	inlineFl   = 0x10000000
	modeDir    = 0x4000
	modeLink   = 0xA000
	modeMask   = 0xF000
	maxFile    = 1 << 20 // the files read here are small text files
	maxExtents = 4       // depth of the extent tree
)

func openExt4(r io.ReaderAt, off, size int64) (*fs, error) {
	sb := make([]byte, 1024)
	if err := readFull(r, sb, off+1024); err != nil {
		return nil, fmt.Errorf("superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xEF53 {
		return nil, ErrNotExt4
	}
	f := &fs{r: r, off: off, size: size}
	logBS := le.Uint32(sb[0x18:])
	if logBS > 6 {
		return nil, fmt.Errorf("%w: block size 2^%d KiB", ErrCorrupt, logBS)
	}
	f.blockSize = 1024 << logBS
	blocksPG := le.Uint32(sb[0x20:])
	f.inodesPG = le.Uint32(sb[0x28:])
	f.firstBlock = le.Uint32(sb[0x14:])
	f.inodeSize = 128
	if le.Uint32(sb[0x4C:]) >= 1 {
		f.inodeSize = int64(le.Uint16(sb[0x58:]))
	}
	incompat := le.Uint32(sb[0x60:])
	f.is64 = incompat&0x80 != 0
	f.descSize = 32
	if f.is64 {
		f.descSize = int64(le.Uint16(sb[0xFE:]))
	}
	blocks := uint64(le.Uint32(sb[0x04:]))
	if f.is64 {
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	if blocksPG == 0 || f.inodesPG == 0 || f.inodeSize < 128 || f.inodeSize > f.blockSize || f.descSize < 32 || f.descSize > 1024 {
		return nil, fmt.Errorf("%w: superblock geometry (%d blocks and %d inodes per group, %d-byte inodes, %d-byte descriptors)", ErrCorrupt, blocksPG, f.inodesPG, f.inodeSize, f.descSize)
	}
	f.groups = uint32((blocks - uint64(f.firstBlock) + uint64(blocksPG) - 1) / uint64(blocksPG))
	return f, nil
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at offset %#x: %w", len(b), off, err)
}

// readBlock reads part of a filesystem block, checking it lies inside the filesystem.
func (f *fs) read(b []byte, block uint64, within int64) error {
	off := int64(block)*f.blockSize + within
	if block >= uint64(f.size/f.blockSize) || off+int64(len(b)) > f.size {
		return fmt.Errorf("%w: block %d lies outside the %d-byte filesystem", ErrCorrupt, block, f.size)
	}
	return readFull(f.r, b, f.off+off)
}

type inode struct {
	num   uint32
	mode  uint16
	size  int64
	flags uint32
	block [60]byte
}

func (f *fs) inode(n uint32) (*inode, error) {
	if n == 0 || (n-1)/f.inodesPG >= f.groups {
		return nil, fmt.Errorf("%w: inode %d out of range", ErrCorrupt, n)
	}
	g, idx := (n-1)/f.inodesPG, (n-1)%f.inodesPG
	gdBlock := uint64(f.firstBlock) + 1
	desc := make([]byte, f.descSize)
	within := int64(g) * f.descSize
	if err := f.read(desc, gdBlock+uint64(within/f.blockSize), within%f.blockSize); err != nil {
		return nil, fmt.Errorf("group descriptor %d: %w", g, err)
	}
	le := binary.LittleEndian
	table := uint64(le.Uint32(desc[0x8:]))
	if f.is64 && f.descSize >= 64 {
		table |= uint64(le.Uint32(desc[0x28:])) << 32
	}
	within = int64(idx) * f.inodeSize
	b := make([]byte, 128)
	if err := f.read(b, table+uint64(within/f.blockSize), within%f.blockSize); err != nil {
		return nil, fmt.Errorf("inode %d: %w", n, err)
	}
	in := &inode{num: n, mode: le.Uint16(b[0:]), flags: le.Uint32(b[0x20:])}
	in.size = int64(le.Uint32(b[0x4:])) | int64(le.Uint32(b[0x6C:]))<<32
	copy(in.block[:], b[0x28:0x28+60])
	return in, nil
}

// readFile returns an inode's contents (at most maxFile bytes).
func (f *fs) readFile(in *inode) ([]byte, error) {
	if in.size < 0 || in.size > maxFile {
		return nil, fmt.Errorf("inode %d: %d bytes, more than the %d read here", in.num, in.size, maxFile)
	}
	out := make([]byte, in.size)
	if in.mode&modeMask == modeLink && in.size < 60 && in.flags&extentsFl == 0 {
		copy(out, in.block[:]) // a fast symlink: the target is in the inode
		return out, nil
	}
	if in.flags&inlineFl != 0 {
		if in.size > 60 {
			return nil, fmt.Errorf("inode %d: inline data beyond the inode is not supported", in.num)
		}
		copy(out, in.block[:])
		return out, nil
	}
	put := func(logical, physical uint64, n uint64) error {
		for i := uint64(0); i < n; i++ {
			start := int64(logical+i) * f.blockSize
			if start >= in.size {
				return nil
			}
			end := min(start+f.blockSize, in.size)
			if err := f.read(out[start:end], physical+i, 0); err != nil {
				return fmt.Errorf("inode %d: %w", in.num, err)
			}
		}
		return nil
	}
	if in.flags&extentsFl != 0 {
		return out, f.walkExtents(in, in.block[:], 0, put)
	}
	// Block map: direct blocks only (files of up to 12 blocks).
	le := binary.LittleEndian
	for i := 0; i < 12; i++ {
		if b := le.Uint32(in.block[i*4:]); b != 0 {
			if err := put(uint64(i), uint64(b), 1); err != nil {
				return nil, err
			}
		}
	}
	if in.size > 12*f.blockSize {
		return nil, fmt.Errorf("inode %d: indirect blocks are not supported", in.num)
	}
	return out, nil
}

func (f *fs) walkExtents(in *inode, node []byte, depth int, put func(logical, physical, n uint64) error) error {
	le := binary.LittleEndian
	if len(node) < 12 || le.Uint16(node) != 0xF30A {
		return fmt.Errorf("%w: inode %d: bad extent header", ErrCorrupt, in.num)
	}
	entries, d := int(le.Uint16(node[2:])), le.Uint16(node[6:])
	if depth > maxExtents || 12+entries*12 > len(node) {
		return fmt.Errorf("%w: inode %d: extent tree too deep or too wide", ErrCorrupt, in.num)
	}
	for i := 0; i < entries; i++ {
		e := node[12+i*12:]
		if d == 0 {
			n := uint64(le.Uint16(e[4:]))
			if n > 32768 {
				continue // uninitialised: reads as zeros
			}
			phys := uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))
			if err := put(uint64(le.Uint32(e[0:])), phys, n); err != nil {
				return err
			}
			continue
		}
		leaf := uint64(le.Uint16(e[8:]))<<32 | uint64(le.Uint32(e[4:]))
		child := make([]byte, f.blockSize)
		if err := f.read(child, leaf, 0); err != nil {
			return fmt.Errorf("inode %d: extent node: %w", in.num, err)
		}
		if err := f.walkExtents(in, child, depth+1, put); err != nil {
			return err
		}
	}
	return nil
}

type dirent struct {
	name  string
	inode uint32
}

func (f *fs) readDir(in *inode) ([]dirent, error) {
	if in.mode&modeMask != modeDir {
		return nil, fmt.Errorf("inode %d is not a directory", in.num)
	}
	b, err := f.readFile(in)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	var out []dirent
	for off := 0; off+8 <= len(b); {
		ino, rec, nl := le.Uint32(b[off:]), int(le.Uint16(b[off+4:])), int(b[off+6])
		if rec < 8 || off+rec > len(b) || 8+nl > rec {
			return nil, fmt.Errorf("%w: directory inode %d: bad entry at byte %d", ErrCorrupt, in.num, off)
		}
		if ino != 0 && nl > 0 {
			out = append(out, dirent{name: string(b[off+8 : off+8+nl]), inode: ino})
		}
		off += rec
	}
	return out, nil
}

// lookup resolves an absolute path, following symlinks (at most 8).
func (f *fs) lookup(p string) (*inode, error) {
	return f.lookupFrom(rootInode, p, 0)
}

func (f *fs) lookupFrom(dir uint32, p string, links int) (*inode, error) {
	cur, err := f.inode(dir)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(p, "/") {
		if cur, err = f.inode(rootInode); err != nil {
			return nil, err
		}
	}
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i, name := range parts {
		if name == "" || name == "." {
			continue
		}
		ents, err := f.readDir(cur)
		if err != nil {
			return nil, err
		}
		var next *inode
		for _, e := range ents {
			if e.name == name {
				if next, err = f.inode(e.inode); err != nil {
					return nil, err
				}
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("%s: %w", path.Join(parts[:i+1]...), errNotFound)
		}
		if next.mode&modeMask == modeLink {
			if links >= 8 {
				return nil, fmt.Errorf("%s: too many symlinks", p)
			}
			target, err := f.readFile(next)
			if err != nil {
				return nil, err
			}
			rest := strings.Join(parts[i+1:], "/")
			return f.lookupFrom(cur.num, string(target)+"/"+rest, links+1)
		}
		cur = next
	}
	return cur, nil
}

var errNotFound = errors.New("no such file or directory")

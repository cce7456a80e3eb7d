// Package ext4 reads an ext2/3/4 filesystem image: it lists every file with the byte extents
// holding its data (extent trees and the older block maps), reads directories (linear and htree,
// which read linearly) and follows symlinks to read small files by path. It never writes and
// never replays the journal: a cleanly unmounted image is what it is made for.
//
// Like archive/zip it works on an io.ReaderAt of the filesystem alone (a partition's section
// of a disk); hostile images give an error wrapping ErrCorrupt, never a panic or an endless walk.
package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// ErrNotExt4 means the image has no ext2/3/4 superblock.
var ErrNotExt4 = errors.New("not an ext4 filesystem")

// ErrCorrupt marks on-disk structures that contradict themselves.
var ErrCorrupt = errors.New("ext4: corrupt filesystem")

const (
	rootInode    = 2
	extentsFl    = 0x80000
	inlineFl     = 0x10000000
	maxDepth     = 5        // of an extent tree
	maxNodes     = 1 << 16  // extent tree nodes read for one file
	maxRead      = 64 << 20 // ReadFile and directories
	maxPathDepth = 256
	maxLinks     = 8
)

// Extent is where a byte range of a file lies in the filesystem image. Unwritten extents
// (allocated, reading as zeros) are flagged; holes have no extent.
type Extent struct {
	FileOffset, Offset, Length int64
	Unwritten                  bool
}

// Entry is one inode reached by a path.
type Entry struct {
	Path    string // slash-separated, no leading slash; "" for the root
	Mode    fs.FileMode
	Inode   uint32
	Size    int64
	Extents []Extent // regular files, directories and slow symlinks, clipped to Size
	Link    string   // symlinks: the target
}

// DirEntry is one name of a directory.
type DirEntry struct {
	Name  string
	Inode uint32
}

// FS is an open filesystem.
type FS struct {
	r         io.ReaderAt
	size      int64
	blockSize int64
	inodesPG  uint32
	inodeSize int64
	groups    uint32
	tables    []uint64 // inode table block of each group
	work      int64    // bytes read and extents listed since the operation began (see spend)
}

// spend counts work against a budget that a legitimate filesystem never reaches (each of its
// structures is read about once), so that a hostile image that points many entries at one
// huge inode or tree ends in an error, not in hours of reading.
func (f *FS) spend(n int64) error {
	f.work += n
	if f.work > 64<<20+4*f.size {
		return fmt.Errorf("%w: the walk reads more than %d bytes of a %d-byte filesystem (a structure is used many times)", ErrCorrupt, 64<<20+4*f.size, f.size)
	}
	return nil
}

// Open reads the superblock and group descriptors of the filesystem r of size bytes.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	sb := make([]byte, 1024)
	if err := readFull(r, sb, 1024); err != nil {
		return nil, fmt.Errorf("ext4: superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xEF53 {
		return nil, ErrNotExt4
	}
	f := &FS{r: r, size: size}
	logBS := le.Uint32(sb[0x18:])
	if logBS > 6 {
		return nil, fmt.Errorf("%w: block size 2^%d KiB", ErrCorrupt, logBS)
	}
	f.blockSize = 1024 << logBS
	blocksPG := le.Uint32(sb[0x20:])
	f.inodesPG = le.Uint32(sb[0x28:])
	firstBlock := le.Uint32(sb[0x14:])
	f.inodeSize = 128
	if le.Uint32(sb[0x4C:]) >= 1 {
		f.inodeSize = int64(le.Uint16(sb[0x58:]))
	}
	is64 := le.Uint32(sb[0x60:])&0x80 != 0
	descSize := int64(32)
	if is64 {
		descSize = int64(le.Uint16(sb[0xFE:]))
	}
	blocks := uint64(le.Uint32(sb[0x04:]))
	if is64 {
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	if blocksPG == 0 || f.inodesPG == 0 || f.inodeSize < 128 || f.inodeSize > f.blockSize || descSize < 32 || descSize > 1024 || uint64(firstBlock) >= blocks {
		return nil, fmt.Errorf("%w: superblock geometry (%d blocks and %d inodes per group, %d-byte inodes, %d-byte descriptors)", ErrCorrupt, blocksPG, f.inodesPG, f.inodeSize, descSize)
	}
	groups := (blocks - uint64(firstBlock) + uint64(blocksPG) - 1) / uint64(blocksPG)
	gdt := int64(groups) * descSize
	gdtOff := (int64(firstBlock) + 1) * f.blockSize
	if groups > 1<<32-1 || gdt > size || gdtOff+gdt > size {
		return nil, fmt.Errorf("%w: %d group descriptors do not fit the %d-byte image", ErrCorrupt, groups, size)
	}
	f.groups = uint32(groups)
	b := make([]byte, gdt)
	if err := readFull(r, b, gdtOff); err != nil {
		return nil, fmt.Errorf("ext4: group descriptors: %w", err)
	}
	f.tables = make([]uint64, groups)
	for g := range f.tables {
		d := b[int64(g)*descSize:]
		t := uint64(le.Uint32(d[0x8:]))
		if is64 && descSize >= 64 {
			t |= uint64(le.Uint32(d[0x28:])) << 32
		}
		f.tables[g] = t
	}
	return f, nil
}

// BlockSize is the filesystem's block size in bytes.
func (f *FS) BlockSize() int64 { return f.blockSize }

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

// read reads bytes at a block and an offset in it, checking they lie inside the filesystem.
func (f *FS) read(b []byte, block uint64, within int64) error {
	if block >= uint64(f.size/f.blockSize) {
		return fmt.Errorf("%w: block %d lies outside the %d-byte filesystem", ErrCorrupt, block, f.size)
	}
	if err := f.spend(int64(len(b))); err != nil {
		return err
	}
	off := int64(block)*f.blockSize + within
	if off+int64(len(b)) > f.size {
		return fmt.Errorf("%w: %d bytes at %d pass the end of the %d-byte filesystem", ErrCorrupt, len(b), off, f.size)
	}
	return readFull(f.r, b, off)
}

type inode struct {
	Entry
	flags uint32
	block [60]byte
	at    int64 // image offset of the inode
}

func (f *FS) inode(n uint32) (*inode, error) {
	if n == 0 || (n-1)/f.inodesPG >= f.groups {
		return nil, fmt.Errorf("%w: inode %d out of range", ErrCorrupt, n)
	}
	g, idx := (n-1)/f.inodesPG, (n-1)%f.inodesPG
	within := int64(idx) * f.inodeSize
	b := make([]byte, 128)
	blk := f.tables[g] + uint64(within/f.blockSize)
	if err := f.read(b, blk, within%f.blockSize); err != nil {
		return nil, fmt.Errorf("inode %d: %w", n, err)
	}
	le := binary.LittleEndian
	mode := le.Uint16(b[0:])
	in := &inode{flags: le.Uint32(b[0x20:]), at: int64(blk)*f.blockSize + within%f.blockSize}
	in.Inode = n
	in.Size = int64(le.Uint32(b[0x4:])) | int64(le.Uint32(b[0x6C:]))<<32
	if in.Size < 0 {
		return nil, fmt.Errorf("%w: inode %d: size %d", ErrCorrupt, n, in.Size)
	}
	copy(in.block[:], b[0x28:0x28+60])
	in.Mode = fs.FileMode(mode & 0o777)
	switch mode & 0xF000 {
	case 0x8000:
	case 0x4000:
		in.Mode |= fs.ModeDir
	case 0xA000:
		in.Mode |= fs.ModeSymlink
	case 0x6000:
		in.Mode |= fs.ModeDevice
	case 0x2000:
		in.Mode |= fs.ModeDevice | fs.ModeCharDevice
	case 0x1000:
		in.Mode |= fs.ModeNamedPipe
	case 0xC000:
		in.Mode |= fs.ModeSocket
	default:
		in.Mode |= fs.ModeIrregular
	}
	return in, nil
}

// extents lists where an inode's data lies, clipped to its size, sorted by file offset.
func (f *FS) extents(in *inode) ([]Extent, error) {
	if in.flags&inlineFl != 0 {
		if in.Size == 0 {
			return nil, nil
		}
		// The first 60 bytes sit in i_block; more would be in an extended attribute.
		if in.Size > 60 {
			return nil, fmt.Errorf("inode %d: inline data beyond the inode is not supported", in.Inode)
		}
		return []Extent{{Offset: in.at + 0x28, Length: in.Size}}, nil
	}
	var out []Extent
	nblocks := uint64((in.Size + f.blockSize - 1) / f.blockSize)
	put := func(logical, physical, n uint64, unwritten bool) error {
		if logical >= nblocks || n == 0 {
			return nil
		}
		n = min(n, nblocks-logical)
		if physical+n > uint64(f.size/f.blockSize) || physical+n < physical {
			return fmt.Errorf("%w: inode %d: blocks %d+%d lie outside the %d-byte filesystem", ErrCorrupt, in.Inode, physical, n, f.size)
		}
		e := Extent{FileOffset: int64(logical) * f.blockSize, Offset: int64(physical) * f.blockSize, Length: int64(n) * f.blockSize, Unwritten: unwritten}
		e.Length = min(e.Length, in.Size-e.FileOffset)
		if k := len(out); k > 0 {
			p := &out[k-1]
			if e.FileOffset < p.FileOffset+p.Length {
				return fmt.Errorf("%w: inode %d: extents overlap or are out of order at block %d", ErrCorrupt, in.Inode, logical)
			}
			if p.FileOffset+p.Length == e.FileOffset && p.Offset+p.Length == e.Offset && p.Unwritten == e.Unwritten {
				p.Length += e.Length
				return nil
			}
		}
		if err := f.spend(64); err != nil { // an extent costs memory
			return err
		}
		out = append(out, e)
		return nil
	}
	if in.flags&extentsFl != 0 {
		nodes := 0
		return out, f.walkExtents(in, in.block[:], 0, -1, &nodes, put)
	}
	return out, f.walkBlockMap(in, nblocks, put)
}

func (f *FS) walkExtents(in *inode, node []byte, depth, wantDepth int, nodes *int, put func(l, p, n uint64, u bool) error) error {
	le := binary.LittleEndian
	if len(node) < 12 || le.Uint16(node) != 0xF30A {
		return fmt.Errorf("%w: inode %d: bad extent header", ErrCorrupt, in.Inode)
	}
	entries, d := int(le.Uint16(node[2:])), int(le.Uint16(node[6:]))
	if (wantDepth >= 0 && d != wantDepth) || d > maxDepth || 12+entries*12 > len(node) {
		return fmt.Errorf("%w: inode %d: extent node of depth %d with %d entries", ErrCorrupt, in.Inode, d, entries)
	}
	if *nodes++; *nodes > maxNodes {
		return fmt.Errorf("%w: inode %d: more than %d extent nodes", ErrCorrupt, in.Inode, maxNodes)
	}
	for i := 0; i < entries; i++ {
		e := node[12+i*12:]
		if d == 0 {
			n, unwritten := uint64(le.Uint16(e[4:])), false
			if n > 32768 {
				n, unwritten = n-32768, true
			}
			phys := uint64(le.Uint16(e[6:]))<<32 | uint64(le.Uint32(e[8:]))
			if err := put(uint64(le.Uint32(e[0:])), phys, n, unwritten); err != nil {
				return err
			}
			continue
		}
		leaf := uint64(le.Uint16(e[8:]))<<32 | uint64(le.Uint32(e[4:]))
		child := make([]byte, f.blockSize)
		if err := f.read(child, leaf, 0); err != nil {
			return fmt.Errorf("inode %d: extent node: %w", in.Inode, err)
		}
		if err := f.walkExtents(in, child, depth+1, d-1, nodes, put); err != nil {
			return err
		}
	}
	return nil
}

// walkBlockMap reads ext2/3 block maps: 12 direct blocks, then single, double and triple
// indirect blocks, up to the file's last block.
func (f *FS) walkBlockMap(in *inode, nblocks uint64, put func(l, p, n uint64, u bool) error) error {
	le := binary.LittleEndian
	per := uint64(f.blockSize / 4)
	var logical uint64
	for i := 0; i < 12 && logical < nblocks; i, logical = i+1, logical+1 {
		if b := le.Uint32(in.block[i*4:]); b != 0 {
			if err := put(logical, uint64(b), 1, false); err != nil {
				return err
			}
		}
	}
	var walk func(block uint64, level int) error
	walk = func(block uint64, level int) error {
		span := uint64(1)
		for range level {
			span *= per
		}
		if block == 0 {
			logical += span * per
			return nil
		}
		b := make([]byte, f.blockSize)
		if err := f.read(b, block, 0); err != nil {
			return fmt.Errorf("inode %d: indirect block: %w", in.Inode, err)
		}
		for i := uint64(0); i < per && logical < nblocks; i++ {
			p := uint64(le.Uint32(b[i*4:]))
			if level == 0 {
				if p != 0 {
					if err := put(logical, p, 1, false); err != nil {
						return err
					}
				}
				logical++
				continue
			}
			if err := walk(p, level-1); err != nil {
				return err
			}
		}
		return nil
	}
	for level := 0; level < 3 && logical < nblocks; level++ {
		if err := walk(uint64(le.Uint32(in.block[(12+level)*4:])), level); err != nil {
			return err
		}
	}
	return nil
}

// readData reads an inode's contents (at most maxRead bytes): holes and unwritten extents as
// zeros, a fast symlink's target from the inode.
func (f *FS) readData(in *inode) ([]byte, error) {
	if in.Size > maxRead {
		return nil, fmt.Errorf("inode %d: %d bytes, more than the %d read here", in.Inode, in.Size, maxRead)
	}
	out := make([]byte, in.Size)
	if in.Mode&fs.ModeSymlink != 0 && in.Size < 60 && in.flags&(extentsFl|inlineFl) == 0 {
		copy(out, in.block[:]) // a fast symlink: the target is in the inode
		return out, nil
	}
	ext, err := f.extents(in)
	if err != nil {
		return nil, err
	}
	for _, e := range ext {
		if e.Unwritten {
			continue
		}
		if err := f.spend(e.Length); err != nil {
			return nil, err
		}
		if err := readFull(f.r, out[e.FileOffset:e.FileOffset+e.Length], e.Offset); err != nil {
			return nil, fmt.Errorf("inode %d: %w", in.Inode, err)
		}
	}
	return out, nil
}

// readDir lists a directory's names but "." and "..".
func (f *FS) readDir(in *inode) ([]DirEntry, error) {
	all, err := f.readDirAll(in)
	out := all[:0]
	for _, e := range all {
		if e.Name != "." && e.Name != ".." {
			out = append(out, e)
		}
	}
	return out, err
}

// readDirAll lists a directory's names, "." and ".." included (lookups follow "..").
func (f *FS) readDirAll(in *inode) ([]DirEntry, error) {
	if in.Mode&fs.ModeDir == 0 {
		return nil, fmt.Errorf("inode %d is not a directory", in.Inode)
	}
	if in.Size > f.size {
		return nil, fmt.Errorf("%w: directory inode %d of %d bytes in a %d-byte filesystem", ErrCorrupt, in.Inode, in.Size, f.size)
	}
	b, err := f.readData(in)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	var out []DirEntry
	for off := 0; off+8 <= len(b); {
		ino, rec, nl := le.Uint32(b[off:]), int(le.Uint16(b[off+4:])), int(b[off+6])
		if (rec == 0 || rec == 65535) && f.blockSize == 65536 {
			rec = 65536
		}
		if rec < 8 || rec%4 != 0 || off+rec > len(b) || 8+nl > rec {
			return nil, fmt.Errorf("%w: directory inode %d: bad entry at byte %d", ErrCorrupt, in.Inode, off)
		}
		if ino != 0 && nl > 0 {
			out = append(out, DirEntry{Name: string(b[off+8 : off+8+nl]), Inode: ino})
		}
		off += rec
	}
	return out, nil
}

// entry completes an inode's Entry: extents for data, the target for symlinks.
func (f *FS) entry(in *inode, p string) (Entry, error) {
	e := in.Entry
	e.Path = p
	var err error
	switch {
	case in.Mode&fs.ModeSymlink != 0:
		var t []byte
		if in.Size > 4096 {
			return e, fmt.Errorf("%w: %s: symlink of %d bytes", ErrCorrupt, p, in.Size)
		}
		if t, err = f.readData(in); err == nil {
			e.Link = string(t)
		}
	case in.Mode.IsRegular() || in.Mode.IsDir():
		e.Extents, err = f.extents(in)
	}
	if err != nil {
		return e, fmt.Errorf("ext4: %s: %w", p, err)
	}
	return e, nil
}

// Walk calls fn for every inode reachable from the root: the root first, each directory before
// its entries, entries in on-disk order. A directory reached twice is an error.
func (f *FS) Walk(fn func(Entry) error) error {
	f.work = 0
	root, err := f.inode(rootInode)
	if err != nil {
		return fmt.Errorf("ext4: root: %w", err)
	}
	if root.Mode&fs.ModeDir == 0 {
		return fmt.Errorf("%w: the root inode is not a directory", ErrCorrupt)
	}
	return f.walk(root, "", 0, map[uint32]bool{rootInode: true}, fn)
}

func (f *FS) walk(dir *inode, p string, depth int, seen map[uint32]bool, fn func(Entry) error) error {
	e, err := f.entry(dir, p)
	if err != nil {
		return err
	}
	if err := fn(e); err != nil {
		return err
	}
	if depth > maxPathDepth {
		return fmt.Errorf("%w: directories nested deeper than %d at %s", ErrCorrupt, maxPathDepth, p)
	}
	ents, err := f.readDir(dir)
	if err != nil {
		return fmt.Errorf("ext4: directory %s: %w", p, err)
	}
	for _, d := range ents {
		if strings.IndexByte(d.Name, '/') >= 0 || strings.IndexByte(d.Name, 0) >= 0 {
			return fmt.Errorf("%w: directory %s: entry named %q", ErrCorrupt, p, d.Name)
		}
		cp := path.Join(p, d.Name)
		in, err := f.inode(d.Inode)
		if err != nil {
			return fmt.Errorf("ext4: %s: %w", cp, err)
		}
		if in.Mode&fs.ModeDir != 0 {
			if seen[d.Inode] {
				return fmt.Errorf("%w: directory %s reached twice (a loop)", ErrCorrupt, cp)
			}
			seen[d.Inode] = true
			if err := f.walk(in, cp, depth+1, seen, fn); err != nil {
				return err
			}
			continue
		}
		e, err := f.entry(in, cp)
		if err != nil {
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Lookup finds the inode at path p (absolute or relative to the root), following symlinks on
// the way and at the end.
func (f *FS) Lookup(p string) (Entry, error) {
	f.work = 0
	in, err := f.lookupFrom(rootInode, p, 0)
	if err != nil {
		return Entry{}, err
	}
	return f.entry(in, strings.Trim(p, "/"))
}

func (f *FS) lookupFrom(dir uint32, p string, links int) (*inode, error) {
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
		ents, err := f.readDirAll(cur)
		if err != nil {
			return nil, err
		}
		var next *inode
		for _, e := range ents {
			if e.Name == name {
				if next, err = f.inode(e.Inode); err != nil {
					return nil, err
				}
				break
			}
		}
		if next == nil {
			return nil, fmt.Errorf("%s: %w", path.Join(parts[:i+1]...), fs.ErrNotExist)
		}
		if next.Mode&fs.ModeSymlink != 0 {
			if links >= maxLinks {
				return nil, fmt.Errorf("%s: more than %d symlinks", p, maxLinks)
			}
			target, err := f.readData(next)
			if err != nil {
				return nil, err
			}
			rest := strings.Join(parts[i+1:], "/")
			return f.lookupFrom(cur.Inode, string(target)+"/"+rest, links+1)
		}
		cur = next
	}
	return cur, nil
}

// ReadDir lists the directory at path p.
func (f *FS) ReadDir(p string) ([]DirEntry, error) {
	f.work = 0
	in, err := f.lookupFrom(rootInode, p, 0)
	if err != nil {
		return nil, err
	}
	return f.readDir(in)
}

// ReadFile returns the contents of the file at path p (at most 64 MiB).
func (f *FS) ReadFile(p string) ([]byte, error) {
	f.work = 0
	in, err := f.lookupFrom(rootInode, p, 0)
	if err != nil {
		return nil, err
	}
	if !in.Mode.IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	return f.readData(in)
}

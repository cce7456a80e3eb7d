// Package xfs reads an XFS filesystem image: it lists every file with the byte extents holding
// its data (data forks in extents and btree format), reads directories (shortform, block, leaf
// and node) and symlinks. Version 5 (CRC) filesystems are what it is made for; version 4 ones
// read too. It never writes and never replays the log: a cleanly unmounted image is what it
// reads, and checksums are not verified (the caller checks content by other means).
//
// Like archive/zip it works on an io.ReaderAt of the filesystem alone; hostile images give an
// error wrapping ErrCorrupt, never a panic or an endless walk.
package xfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
)

// ErrNotXFS means the image does not start with an XFS superblock.
var ErrNotXFS = errors.New("not an XFS filesystem")

// ErrCorrupt marks on-disk structures that contradict themselves.
var ErrCorrupt = errors.New("xfs: corrupt filesystem")

var be = binary.BigEndian

const (
	maxDepth     = 8        // of a bmap btree
	maxNodes     = 1 << 16  // btree blocks read for one fork
	maxDir       = 64 << 20 // bytes of directory blocks read for one directory
	maxPathDepth = 256
	leafOffset   = 32 << 30 // directory leaf blocks start at this byte offset of the directory
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
	Inode   uint64
	Size    int64
	Extents []Extent // regular files, clipped to Size
	Link    string   // symlinks: the target
}

// Superblock holds the fields of the superblock the reader uses.
type Superblock struct {
	BlockSize  int64
	SectorSize int64
	InodeSize  int64
	AGBlocks   uint32
	AGCount    uint32
	DataBlocks uint64
	RootInode  uint64
	Version    int // 4 or 5
	DirBlock   int64
	FType      bool // directory entries hold the file type
	NRExt64    bool
	agblklog   uint
	inopblog   uint
}

// FS is an open filesystem.
type FS struct {
	r     io.ReaderAt
	size  int64
	Super Superblock
	work  int64 // bytes read and extents listed since Walk began (see spend)
}

// spend counts work against a budget that a legitimate filesystem never reaches (each of its
// structures is read about once), so that a hostile image that points many entries at one
// huge inode or btree ends in an error, not in hours of reading.
func (f *FS) spend(n int64) error {
	f.work += n
	if limit := 64<<20 + f.size/2; f.work > limit {
		return fmt.Errorf("%w: the walk reads more than %d bytes of a %d-byte filesystem (a structure is used many times)", ErrCorrupt, limit, f.size)
	}
	return nil
}

// Open reads the superblock of the filesystem r of size bytes.
func Open(r io.ReaderAt, size int64) (*FS, error) {
	b := make([]byte, 512)
	if err := readFull(r, b, 0); err != nil {
		return nil, fmt.Errorf("xfs: superblock: %w", err)
	}
	if string(b[:4]) != "XFSB" {
		return nil, ErrNotXFS
	}
	sb := Superblock{
		BlockSize: int64(be.Uint32(b[4:])), DataBlocks: be.Uint64(b[8:]), RootInode: be.Uint64(b[56:]),
		AGBlocks: be.Uint32(b[84:]), AGCount: be.Uint32(b[88:]), SectorSize: int64(be.Uint16(b[102:])),
		InodeSize: int64(be.Uint16(b[104:])), Version: int(be.Uint16(b[100:]) & 0xF),
		agblklog: uint(b[124]), inopblog: uint(b[123]),
	}
	blocklog, inodelog := uint(b[120]), uint(b[122])
	if sb.Version != 4 && sb.Version != 5 {
		return nil, fmt.Errorf("xfs: superblock version %d is not supported (4 and 5 are)", sb.Version)
	}
	if blocklog < 9 || blocklog > 16 || sb.BlockSize != 1<<blocklog || inodelog < 8 || inodelog > 11 || sb.InodeSize != 1<<inodelog ||
		sb.inopblog != blocklog-inodelog || sb.AGBlocks == 0 || sb.AGCount == 0 || sb.agblklog > 31 || uint64(sb.AGBlocks) > 1<<sb.agblklog ||
		sb.SectorSize < 512 || sb.SectorSize > sb.BlockSize {
		return nil, fmt.Errorf("%w: superblock geometry (block log %d, inode log %d, %d blocks in %d AGs)", ErrCorrupt, blocklog, inodelog, sb.AGBlocks, sb.AGCount)
	}
	dirblklog := uint(b[192])
	if blocklog+dirblklog > 16 {
		return nil, fmt.Errorf("%w: directory block log %d", ErrCorrupt, dirblklog)
	}
	sb.DirBlock = sb.BlockSize << dirblklog
	if sb.DirBlock > 64<<10 {
		return nil, fmt.Errorf("%w: %d-byte directory blocks", ErrCorrupt, sb.DirBlock)
	}
	if sb.Version == 5 {
		incompat := be.Uint32(b[216:])
		sb.FType = incompat&0x1 != 0
		sb.NRExt64 = incompat&0x20 != 0
		if unknown := incompat &^ (0x1 | 0x2 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80); unknown != 0 {
			return nil, fmt.Errorf("xfs: incompatible features %#x are not supported", unknown)
		}
	} else {
		sb.FType = be.Uint16(b[100:])&0x8000 != 0 && be.Uint32(b[200:])&0x200 != 0
	}
	return &FS{r: r, size: size, Super: sb}, nil
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

// fsbOffset turns a filesystem block number (AG number and block in the AG) into a byte offset,
// checking that count blocks there lie inside the image.
func (f *FS) fsbOffset(fsb, count uint64) (int64, error) {
	ag, agb := fsb>>f.Super.agblklog, fsb&(1<<f.Super.agblklog-1)
	if ag >= uint64(f.Super.AGCount) || agb >= uint64(f.Super.AGBlocks) || count > uint64(f.Super.AGBlocks) || agb+count > uint64(f.Super.AGBlocks) {
		return 0, fmt.Errorf("%w: block %d+%d outside the filesystem", ErrCorrupt, fsb, count)
	}
	off := (int64(ag)*int64(f.Super.AGBlocks) + int64(agb)) * f.Super.BlockSize
	if off+int64(count)*f.Super.BlockSize > f.size {
		return 0, fmt.Errorf("%w: block %d+%d past the end of the %d-byte image", ErrCorrupt, fsb, count, f.size)
	}
	return off, nil
}

func (f *FS) readBlocks(fsb, count uint64) ([]byte, error) {
	off, err := f.fsbOffset(fsb, count)
	if err != nil {
		return nil, err
	}
	if err := f.spend(int64(count) * f.Super.BlockSize); err != nil {
		return nil, err
	}
	b := make([]byte, int64(count)*f.Super.BlockSize)
	return b, readFull(f.r, b, off)
}

type inode struct {
	Entry
	format   byte
	nextents uint64
	data     []byte // the data fork's literal area
}

// inode reads inode number n.
func (f *FS) inode(n uint64) (*inode, error) {
	sb := &f.Super
	ag := n >> (sb.agblklog + sb.inopblog)
	agb := (n >> sb.inopblog) & (1<<sb.agblklog - 1)
	idx := n & (1<<sb.inopblog - 1)
	if ag >= uint64(sb.AGCount) || agb >= uint64(sb.AGBlocks) {
		return nil, fmt.Errorf("%w: inode %d out of range", ErrCorrupt, n)
	}
	off := (int64(ag)*int64(sb.AGBlocks)+int64(agb))*sb.BlockSize + int64(idx)*sb.InodeSize
	if err := f.spend(sb.InodeSize); err != nil {
		return nil, err
	}
	b := make([]byte, sb.InodeSize)
	if off+sb.InodeSize > f.size {
		return nil, fmt.Errorf("%w: inode %d past the end of the image", ErrCorrupt, n)
	}
	if err := readFull(f.r, b, off); err != nil {
		return nil, fmt.Errorf("inode %d: %w", n, err)
	}
	if string(b[:2]) != "IN" {
		return nil, fmt.Errorf("%w: inode %d: no IN magic", ErrCorrupt, n)
	}
	ver := b[4]
	lit := int64(100)
	if ver == 3 {
		lit = 176
		if sb.Version != 5 || be.Uint64(b[152:]) != n {
			return nil, fmt.Errorf("%w: inode %d: says it is inode %d", ErrCorrupt, n, be.Uint64(b[152:]))
		}
	} else if ver != 1 && ver != 2 {
		return nil, fmt.Errorf("%w: inode %d: version %d", ErrCorrupt, n, ver)
	}
	mode := be.Uint16(b[2:])
	in := &inode{format: b[5]}
	in.Inode = n
	in.Size = int64(be.Uint64(b[56:]))
	if in.Size < 0 {
		return nil, fmt.Errorf("%w: inode %d: size %d", ErrCorrupt, n, in.Size)
	}
	in.nextents = uint64(be.Uint32(b[76:]))
	if ver == 3 && be.Uint64(b[120:])&(1<<4) != 0 { // XFS_DIFLAG2_NREXT64: a 64-bit count
		in.nextents = be.Uint64(b[24:])
	}
	forkoff := int64(b[82]) * 8
	end := sb.InodeSize
	if forkoff != 0 {
		end = lit + forkoff
	}
	if end > sb.InodeSize || end < lit {
		return nil, fmt.Errorf("%w: inode %d: attribute fork offset %d", ErrCorrupt, n, forkoff)
	}
	in.data = b[lit:end]
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
		return nil, fmt.Errorf("%w: inode %d: mode %#o", ErrCorrupt, n, mode)
	}
	return in, nil
}

// rawExtent is one bmap record: file block, filesystem block, count, unwritten.
type rawExtent struct {
	off, fsb, count uint64
	unwritten       bool
}

func decodeExtent(b []byte) rawExtent {
	l0, l1 := be.Uint64(b), be.Uint64(b[8:])
	return rawExtent{
		unwritten: l0>>63 != 0,
		off:       (l0 & (1<<63 - 1)) >> 9,
		fsb:       (l0&0x1FF)<<43 | l1>>21,
		count:     l1 & (1<<21 - 1),
	}
}

// forkExtents lists a data fork's records in extents or btree format, in file order.
func (f *FS) forkExtents(in *inode) ([]rawExtent, error) {
	var out []rawExtent
	switch in.format {
	case 2: // extents
		if in.nextents > uint64(len(in.data)/16) {
			return nil, fmt.Errorf("%w: inode %d: %d extents in a %d-byte fork", ErrCorrupt, in.Inode, in.nextents, len(in.data))
		}
		for i := uint64(0); i < in.nextents; i++ {
			out = append(out, decodeExtent(in.data[i*16:]))
		}
	case 3: // btree: the root in the inode
		if len(in.data) < 4 {
			return nil, fmt.Errorf("%w: inode %d: btree root", ErrCorrupt, in.Inode)
		}
		level, n := int(be.Uint16(in.data)), int(be.Uint16(in.data[2:]))
		maxr := (len(in.data) - 4) / 16
		if level == 0 || level > maxDepth || n > maxr {
			return nil, fmt.Errorf("%w: inode %d: btree root of level %d with %d records", ErrCorrupt, in.Inode, level, n)
		}
		nodes := 0
		for i := 0; i < n; i++ {
			ptr := be.Uint64(in.data[4+maxr*8+i*8:])
			var err error
			if out, err = f.btree(in, ptr, level-1, &nodes, out); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("%w: inode %d: data fork format %d", ErrCorrupt, in.Inode, in.format)
	}
	return out, nil
}

func (f *FS) btree(in *inode, fsb uint64, level int, nodes *int, out []rawExtent) ([]rawExtent, error) {
	if *nodes++; *nodes > maxNodes {
		return nil, fmt.Errorf("%w: inode %d: more than %d btree blocks", ErrCorrupt, in.Inode, maxNodes)
	}
	b, err := f.readBlocks(fsb, 1)
	if err != nil {
		return nil, fmt.Errorf("inode %d: btree block: %w", in.Inode, err)
	}
	hdr := 24
	magic := string(b[:4])
	if magic == "BMA3" {
		hdr = 72
		if be.Uint64(b[56:]) != in.Inode {
			return nil, fmt.Errorf("%w: inode %d: btree block %d belongs to inode %d", ErrCorrupt, in.Inode, fsb, be.Uint64(b[56:]))
		}
	} else if magic != "BMAP" {
		return nil, fmt.Errorf("%w: inode %d: btree block %d has magic %q", ErrCorrupt, in.Inode, fsb, magic)
	}
	lvl, n := int(be.Uint16(b[4:])), int(be.Uint16(b[6:]))
	maxr := (len(b) - hdr) / 16
	if lvl != level || n > maxr {
		return nil, fmt.Errorf("%w: inode %d: btree block %d of level %d (want %d) with %d records", ErrCorrupt, in.Inode, fsb, lvl, level, n)
	}
	for i := 0; i < n; i++ {
		if level == 0 {
			if err := f.spend(64); err != nil {
				return nil, err
			}
			out = append(out, decodeExtent(b[hdr+i*16:]))
			continue
		}
		if out, err = f.btree(in, be.Uint64(b[hdr+maxr*8+i*8:]), level-1, nodes, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// extents lists a regular file's data as byte extents clipped to its size.
func (f *FS) extents(in *inode) ([]Extent, error) {
	raw, err := f.forkExtents(in)
	if err != nil {
		return nil, err
	}
	bs := f.Super.BlockSize
	var out []Extent
	var next uint64
	for _, r := range raw {
		if r.off < next || r.count == 0 {
			return nil, fmt.Errorf("%w: inode %d: extents overlap or are out of order at block %d", ErrCorrupt, in.Inode, r.off)
		}
		next = r.off + r.count
		if r.off > uint64(in.Size/bs)+1 {
			continue // past the end (preallocation)
		}
		off, err := f.fsbOffset(r.fsb, r.count)
		if err != nil {
			return nil, fmt.Errorf("inode %d: %w", in.Inode, err)
		}
		e := Extent{FileOffset: int64(r.off) * bs, Offset: off, Length: int64(r.count) * bs, Unwritten: r.unwritten}
		if e.FileOffset >= in.Size {
			continue
		}
		e.Length = min(e.Length, in.Size-e.FileOffset)
		if k := len(out); k > 0 {
			p := &out[k-1]
			if p.FileOffset+p.Length == e.FileOffset && p.Offset+p.Length == e.Offset && p.Unwritten == e.Unwritten {
				p.Length += e.Length
				continue
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// symlink returns a symlink's target: in the inode (local) or in remote blocks.
func (f *FS) symlink(in *inode) (string, error) {
	if in.Size > 1024 || in.Size == 0 {
		return "", fmt.Errorf("%w: inode %d: symlink of %d bytes", ErrCorrupt, in.Inode, in.Size)
	}
	if in.format == 1 {
		if in.Size > int64(len(in.data)) {
			return "", fmt.Errorf("%w: inode %d: local symlink of %d bytes", ErrCorrupt, in.Inode, in.Size)
		}
		return string(in.data[:in.Size]), nil
	}
	raw, err := f.forkExtents(in)
	if err != nil {
		return "", err
	}
	var t []byte
	for _, r := range raw {
		if r.count > 4 {
			return "", fmt.Errorf("%w: inode %d: symlink extent of %d blocks", ErrCorrupt, in.Inode, r.count)
		}
		b, err := f.readBlocks(r.fsb, r.count)
		if err != nil {
			return "", err
		}
		for i := int64(0); i < int64(r.count); i++ {
			blk := b[i*f.Super.BlockSize : (i+1)*f.Super.BlockSize]
			if f.Super.Version == 5 {
				if string(blk[:4]) != "XSLM" {
					return "", fmt.Errorf("%w: inode %d: remote symlink block without XSLM magic", ErrCorrupt, in.Inode)
				}
				n := int(be.Uint32(blk[8:]))
				if 56+n > len(blk) {
					return "", fmt.Errorf("%w: inode %d: remote symlink block of %d bytes", ErrCorrupt, in.Inode, n)
				}
				t = append(t, blk[56:56+n]...)
			} else {
				t = append(t, blk...)
			}
		}
	}
	if int64(len(t)) < in.Size {
		return "", fmt.Errorf("%w: inode %d: symlink target shorter than %d bytes", ErrCorrupt, in.Inode, in.Size)
	}
	return string(t[:in.Size]), nil
}

type dirent struct {
	name  string
	inode uint64
}

// readDir lists a directory's names but "." and "..".
func (f *FS) readDir(in *inode) ([]dirent, error) {
	if in.format == 1 {
		return f.shortform(in)
	}
	raw, err := f.forkExtents(in)
	if err != nil {
		return nil, err
	}
	// Gather the data blocks (below the leaf offset) by directory block.
	bs := f.Super.BlockSize
	per := uint64(f.Super.DirBlock / bs)
	blocks := map[uint64][]byte{}
	var order []uint64
	var total int64
	for _, r := range raw {
		if r.off*uint64(bs) >= leafOffset || r.unwritten {
			continue
		}
		if total += int64(r.count) * bs; total > maxDir {
			return nil, fmt.Errorf("%w: directory inode %d of more than %d bytes", ErrCorrupt, in.Inode, maxDir)
		}
		b, err := f.readBlocks(r.fsb, r.count)
		if err != nil {
			return nil, fmt.Errorf("directory inode %d: %w", in.Inode, err)
		}
		for i := uint64(0); i < r.count; i++ {
			lb := r.off + i
			db := lb / per
			if blocks[db] == nil {
				blocks[db] = make([]byte, f.Super.DirBlock)
				order = append(order, db)
			}
			copy(blocks[db][(lb%per)*uint64(bs):], b[int64(i)*bs:int64(i+1)*bs])
		}
	}
	sort.Slice(order, func(i, j int) bool { return order[i] < order[j] })
	var out []dirent
	for _, db := range order {
		if out, err = f.dataBlock(in, blocks[db], out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (f *FS) shortform(in *inode) ([]dirent, error) {
	d := in.data
	if len(d) < 6 {
		return nil, fmt.Errorf("%w: directory inode %d: shortform header", ErrCorrupt, in.Inode)
	}
	count, i8 := int(d[0]), d[1]
	isz := 4
	if i8 != 0 {
		isz, count = 8, int(i8)
	}
	p := 2 + isz
	var out []dirent
	for k := 0; k < count; k++ {
		if p+3 > len(d) {
			return nil, fmt.Errorf("%w: directory inode %d: shortform entry %d", ErrCorrupt, in.Inode, k)
		}
		nl := int(d[p])
		q := p + 3 + nl
		if f.Super.FType {
			q++
		}
		if nl == 0 || q+isz > len(d) {
			return nil, fmt.Errorf("%w: directory inode %d: shortform entry %d", ErrCorrupt, in.Inode, k)
		}
		var ino uint64
		if isz == 8 {
			ino = be.Uint64(d[q:])
		} else {
			ino = uint64(be.Uint32(d[q:]))
		}
		out = append(out, dirent{name: string(d[p+3 : p+3+nl]), inode: ino})
		p = q + isz
	}
	return out, nil
}

// dataBlock reads the entries of one directory data block (single-block or multi-block form).
func (f *FS) dataBlock(in *inode, b []byte, out []dirent) ([]dirent, error) {
	magic := string(b[:4])
	hdr, end := 16, len(b)
	switch magic {
	case "XDB3", "XDD3":
		hdr = 64
		if be.Uint64(b[40:]) != in.Inode {
			return nil, fmt.Errorf("%w: directory inode %d: block owned by inode %d", ErrCorrupt, in.Inode, be.Uint64(b[40:]))
		}
	case "XD2B", "XD2D":
	default:
		return nil, fmt.Errorf("%w: directory inode %d: data block magic %q", ErrCorrupt, in.Inode, magic)
	}
	if magic == "XDB3" || magic == "XD2B" { // single block: leaf entries and a tail at its end
		count := int64(be.Uint32(b[len(b)-8:]))
		if count*8+8 > int64(len(b)-hdr) {
			return nil, fmt.Errorf("%w: directory inode %d: block tail of %d leaves", ErrCorrupt, in.Inode, count)
		}
		end = len(b) - 8 - int(count)*8
	}
	for p := hdr; p+8 <= end; {
		if be.Uint16(b[p:]) == 0xFFFF { // unused space
			n := int(be.Uint16(b[p+2:]))
			if n < 8 || n%8 != 0 || p+n > end {
				return nil, fmt.Errorf("%w: directory inode %d: free space of %d bytes at %d", ErrCorrupt, in.Inode, n, p)
			}
			p += n
			continue
		}
		ino := be.Uint64(b[p:])
		nl := int(b[p+8])
		sz := 8 + 1 + nl + 2
		if f.Super.FType {
			sz++
		}
		sz = (sz + 7) &^ 7
		if nl == 0 || p+sz > end {
			return nil, fmt.Errorf("%w: directory inode %d: entry at %d", ErrCorrupt, in.Inode, p)
		}
		name := b[p+9 : p+9+nl]
		if !bytes.Equal(name, []byte(".")) && !bytes.Equal(name, []byte("..")) {
			out = append(out, dirent{name: string(name), inode: ino})
		}
		p += sz
	}
	return out, nil
}

// entry completes an inode's Entry: extents for regular files, the target for symlinks.
func (f *FS) entry(in *inode, p string) (Entry, error) {
	e := in.Entry
	e.Path = p
	var err error
	switch {
	case in.Mode&fs.ModeSymlink != 0:
		e.Link, err = f.symlink(in)
	case in.Mode.IsRegular():
		e.Extents, err = f.extents(in)
	}
	if err != nil {
		return e, fmt.Errorf("xfs: %s: %w", p, err)
	}
	return e, nil
}

// Walk calls fn for every inode reachable from the root: the root first, each directory before
// its entries, entries in on-disk order. A directory reached twice is an error.
func (f *FS) Walk(fn func(Entry) error) error {
	f.work = 0
	root, err := f.inode(f.Super.RootInode)
	if err != nil {
		return fmt.Errorf("xfs: root: %w", err)
	}
	if !root.Mode.IsDir() {
		return fmt.Errorf("%w: the root inode is not a directory", ErrCorrupt)
	}
	return f.walk(root, "", 0, map[uint64]bool{f.Super.RootInode: true}, fn)
}

func (f *FS) walk(dir *inode, p string, depth int, seen map[uint64]bool, fn func(Entry) error) error {
	if err := fn(dir.Entry); err != nil {
		return err
	}
	if depth > maxPathDepth {
		return fmt.Errorf("%w: directories nested deeper than %d at %s", ErrCorrupt, maxPathDepth, p)
	}
	ents, err := f.readDir(dir)
	if err != nil {
		return fmt.Errorf("xfs: directory %s: %w", p, err)
	}
	for _, d := range ents {
		if bytes.IndexByte([]byte(d.name), '/') >= 0 || bytes.IndexByte([]byte(d.name), 0) >= 0 || d.name == "." || d.name == ".." {
			return fmt.Errorf("%w: directory %s: entry named %q", ErrCorrupt, p, d.name)
		}
		cp := path.Join(p, d.name)
		in, err := f.inode(d.inode)
		if err != nil {
			return fmt.Errorf("xfs: %s: %w", cp, err)
		}
		in.Path = cp
		if in.Mode.IsDir() {
			if seen[d.inode] {
				return fmt.Errorf("%w: directory %s reached twice (a loop)", ErrCorrupt, cp)
			}
			seen[d.inode] = true
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

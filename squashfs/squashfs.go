// Package squashfs lists the files of a squashfs 4.0 image and where their data lies: the data
// blocks and the fragment block holding each file's tail, as positions of the stored
// (compressed or not) blocks and offsets in their content. It decompresses only metadata
// (inodes, directories, the fragment table), never file data: its job is to say where the bytes
// are (for filemap), not to extract them. Metadata compressed with zstd or gzip is read; other
// compressors are refused.
//
// Like archive/zip it works on an io.ReaderAt; hostile images give an error wrapping ErrCorrupt,
// never a panic or an endless walk.
package squashfs

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"

	"github.com/klauspost/compress/zstd"
)

// ErrCorrupt marks an image that breaks the format's rules.
var ErrCorrupt = errors.New("squashfs: corrupt image")

// ErrNotSquashfs means the image does not start with a squashfs 4.0 superblock.
var ErrNotSquashfs = errors.New("squashfs: not a squashfs 4.0 image")

const (
	magic        = 0x73717368
	metaSize     = 8192
	noFragment   = 0xFFFFFFFF
	uncompressed = 1 << 24
	maxDepth     = 256
	maxBlocks    = 1 << 22 // per file: 512 GiB of 128 KiB blocks
	maxCache     = 4096    // decompressed metadata blocks kept
)

// Compression ids of the superblock.
const (
	Gzip = 1
	LZMA = 2
	LZO  = 3
	XZ   = 4
	LZ4  = 5
	Zstd = 6
)

// Piece is where a byte range of a file lies: when InFrame, Offset is the image offset of the
// compressed block holding it and Within the offset in the block's decompressed content;
// otherwise the bytes are stored as they are at Offset+Within. (The shape of filemap.Piece.)
type Piece struct {
	FileOffset, Length int64
	Offset, Within     int64
	InFrame            bool
}

// Entry is one file, directory, symlink or other inode reached by a path.
type Entry struct {
	Path   string // slash-separated, no leading slash; "" for the root
	Mode   fs.FileMode
	Inode  uint32
	Size   int64   // regular files
	Pieces []Piece // regular files: their data, in file order; sparse blocks have none
	Link   string  // symlinks: the target
}

// Superblock holds the fields of the image header the reader uses.
type Superblock struct {
	Inodes         uint32
	BlockSize      uint32
	Fragments      uint32
	Compression    uint16
	Flags          uint16
	RootInode      uint64
	BytesUsed      int64
	InodeTable     int64
	DirectoryTable int64
	FragmentTable  int64
}

// Reader reads one image.
type Reader struct {
	r     io.ReaderAt
	size  int64
	Super Superblock
	zdec  *zstd.Decoder
	cache map[int64]metaBlock
	work  int64 // metadata bytes consumed since Walk began (see spend)
}

// spend counts metadata bytes consumed against a budget that a legitimate image never reaches
// (its metadata is read about once, and is smaller than the image), so that a hostile image
// pointing many entries at one huge block list ends in an error, not in hours of reading.
func (rd *Reader) spend(n int64) error {
	rd.work += n
	if limit := 4<<20 + 32*rd.Super.BytesUsed; rd.work > limit {
		return fmt.Errorf("%w: the walk reads more than %d bytes of metadata from a %d-byte image (a structure is used many times)", ErrCorrupt, limit, rd.Super.BytesUsed)
	}
	return nil
}

type metaBlock struct {
	data []byte
	next int64 // image offset of the following metadata block
}

// Open reads the superblock of the image r of size bytes.
func Open(r io.ReaderAt, size int64) (*Reader, error) {
	b := make([]byte, 96)
	if err := readFull(r, b, 0); err != nil {
		return nil, fmt.Errorf("squashfs: superblock: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint32(b) != magic || le.Uint16(b[28:]) != 4 {
		return nil, ErrNotSquashfs
	}
	sb := Superblock{
		Inodes: le.Uint32(b[4:]), BlockSize: le.Uint32(b[12:]), Fragments: le.Uint32(b[16:]),
		Compression: le.Uint16(b[20:]), Flags: le.Uint16(b[24:]), RootInode: le.Uint64(b[32:]),
		BytesUsed: int64(le.Uint64(b[40:])), InodeTable: int64(le.Uint64(b[64:])),
		DirectoryTable: int64(le.Uint64(b[72:])), FragmentTable: int64(le.Uint64(b[80:])),
	}
	if sb.BlockSize < 4096 || sb.BlockSize > 1<<20 || sb.BlockSize&(sb.BlockSize-1) != 0 || 1<<le.Uint16(b[22:]) != sb.BlockSize {
		return nil, fmt.Errorf("%w: block size %d", ErrCorrupt, sb.BlockSize)
	}
	if sb.BytesUsed > size || sb.BytesUsed < 96 || sb.InodeTable < 96 || sb.InodeTable >= sb.BytesUsed || sb.DirectoryTable < sb.InodeTable || sb.DirectoryTable >= sb.BytesUsed {
		return nil, fmt.Errorf("%w: tables at %d and %d, %d bytes used of %d", ErrCorrupt, sb.InodeTable, sb.DirectoryTable, sb.BytesUsed, size)
	}
	rd := &Reader{r: r, size: size, Super: sb, cache: make(map[int64]metaBlock)}
	switch sb.Compression {
	case Zstd:
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(metaSize))
		if err != nil {
			return nil, err
		}
		rd.zdec = d
	case Gzip:
	default:
		return nil, fmt.Errorf("squashfs: compression %d is not supported (zstd and gzip are)", sb.Compression)
	}
	return rd, nil
}

// Close releases the decompressor.
func (rd *Reader) Close() {
	if rd.zdec != nil {
		rd.zdec.Close()
	}
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(b), off, err)
}

// meta reads the metadata block at image offset pos.
func (rd *Reader) meta(pos int64) (metaBlock, error) {
	if m, ok := rd.cache[pos]; ok {
		return m, nil
	}
	if pos < 0 || pos+2 > rd.Super.BytesUsed {
		return metaBlock{}, fmt.Errorf("%w: metadata block at %d outside the image", ErrCorrupt, pos)
	}
	if err := rd.spend(256); err != nil { // a block read and decompressed costs more than its bytes
		return metaBlock{}, err
	}
	var h [2]byte
	if err := readFull(rd.r, h[:], pos); err != nil {
		return metaBlock{}, fmt.Errorf("squashfs: metadata block: %w", err)
	}
	v := binary.LittleEndian.Uint16(h[:])
	n := int64(v & 0x7FFF)
	if n == 0 || pos+2+n > rd.Super.BytesUsed {
		return metaBlock{}, fmt.Errorf("%w: metadata block at %d of %d bytes", ErrCorrupt, pos, n)
	}
	raw := make([]byte, n)
	if err := readFull(rd.r, raw, pos+2); err != nil {
		return metaBlock{}, fmt.Errorf("squashfs: metadata block: %w", err)
	}
	data := raw
	if v&0x8000 == 0 {
		var err error
		if data, err = rd.decompress(raw); err != nil {
			return metaBlock{}, fmt.Errorf("%w: metadata block at %d: %v", ErrCorrupt, pos, err)
		}
	}
	if len(data) > metaSize {
		return metaBlock{}, fmt.Errorf("%w: metadata block at %d holds %d bytes", ErrCorrupt, pos, len(data))
	}
	m := metaBlock{data: data, next: pos + 2 + n}
	if len(rd.cache) >= maxCache {
		clear(rd.cache)
	}
	rd.cache[pos] = m
	return m, nil
}

func (rd *Reader) decompress(b []byte) ([]byte, error) {
	if rd.zdec != nil {
		return rd.zdec.DecodeAll(b, nil)
	}
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, metaSize+1))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// cursor reads a metadata stream (a table of metadata blocks) from a block and an offset in it.
type cursor struct {
	rd  *Reader
	blk metaBlock
	i   int
}

func (rd *Reader) cursor(pos int64, off int) (*cursor, error) {
	m, err := rd.meta(pos)
	if err != nil {
		return nil, err
	}
	if off > len(m.data) {
		return nil, fmt.Errorf("%w: offset %d in the %d-byte metadata block at %d", ErrCorrupt, off, len(m.data), pos)
	}
	return &cursor{rd: rd, blk: m, i: off}, nil
}

func (c *cursor) read(b []byte) error {
	if err := c.rd.spend(int64(len(b))); err != nil {
		return err
	}
	for n := 0; n < len(b); {
		if c.i == len(c.blk.data) {
			m, err := c.rd.meta(c.blk.next)
			if err != nil {
				return err
			}
			c.blk, c.i = m, 0
		}
		k := copy(b[n:], c.blk.data[c.i:])
		n += k
		c.i += k
	}
	return nil
}

func (c *cursor) u16() (uint16, error) {
	var b [2]byte
	err := c.read(b[:])
	return binary.LittleEndian.Uint16(b[:]), err
}

func (c *cursor) u32() (uint32, error) {
	var b [4]byte
	err := c.read(b[:])
	return binary.LittleEndian.Uint32(b[:]), err
}

func (c *cursor) u64() (uint64, error) {
	var b [8]byte
	err := c.read(b[:])
	return binary.LittleEndian.Uint64(b[:]), err
}

// Inode types.
const (
	tDir = 1 + iota
	tFile
	tSymlink
	tBlock
	tChar
	tFifo
	tSocket
	tXDir
	tXFile
	tXSymlink
	tXBlock
	tXChar
	tXFifo
	tXSocket
)

type inode struct {
	typ, perm uint16
	num       uint32
	// directories
	dirBlock uint32
	dirOff   uint16
	dirSize  uint32
	entry    Entry
}

// inode reads the inode at reference ref (metadata block offset << 16 | offset in the block).
func (rd *Reader) inode(ref uint64) (*inode, error) {
	blk, off := int64(ref>>16), int(ref&0xFFFF)
	if blk > rd.Super.BytesUsed {
		return nil, fmt.Errorf("%w: inode reference %#x outside the image", ErrCorrupt, ref)
	}
	c, err := rd.cursor(rd.Super.InodeTable+blk, off)
	if err != nil {
		return nil, err
	}
	h := make([]byte, 16)
	if err := c.read(h); err != nil {
		return nil, fmt.Errorf("inode %#x: %w", ref, err)
	}
	le := binary.LittleEndian
	in := &inode{typ: le.Uint16(h), perm: le.Uint16(h[2:]) & 0o7777, num: le.Uint32(h[12:])}
	in.entry.Inode = in.num
	in.entry.Mode = fs.FileMode(in.perm & 0o777)
	fail := func(err error) (*inode, error) { return nil, fmt.Errorf("inode %d: %w", in.num, err) }
	var u [8]uint64
	fields := func(sizes ...int) error {
		for i, s := range sizes {
			var err error
			switch s {
			case 2:
				var v uint16
				v, err = c.u16()
				u[i] = uint64(v)
			case 4:
				var v uint32
				v, err = c.u32()
				u[i] = uint64(v)
			case 8:
				u[i], err = c.u64()
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	switch in.typ {
	case tDir: // block_idx, nlink, size16, offset16, parent
		if err := fields(4, 4, 2, 2, 4); err != nil {
			return fail(err)
		}
		in.dirBlock, in.dirSize, in.dirOff = uint32(u[0]), uint32(u[2]), uint16(u[3])
		in.entry.Mode |= fs.ModeDir
	case tXDir: // nlink, size, block_idx, parent, index_count, offset16, xattr
		if err := fields(4, 4, 4, 4, 2, 2, 4); err != nil {
			return fail(err)
		}
		in.dirBlock, in.dirSize, in.dirOff = uint32(u[2]), uint32(u[1]), uint16(u[5])
		in.entry.Mode |= fs.ModeDir
	case tFile, tXFile:
		var start, size uint64
		var frag, fragOff uint32
		if in.typ == tFile { // start, fragment, offset, size
			if err := fields(4, 4, 4, 4); err != nil {
				return fail(err)
			}
			start, frag, fragOff, size = u[0], uint32(u[1]), uint32(u[2]), u[3]
		} else { // start, size, sparse, nlink, fragment, offset, xattr
			if err := fields(8, 8, 8, 4, 4, 4, 4); err != nil {
				return fail(err)
			}
			start, size, frag, fragOff = u[0], u[1], uint32(u[4]), uint32(u[5])
		}
		if err := rd.fileData(c, &in.entry, start, size, frag, fragOff); err != nil {
			return fail(err)
		}
	case tSymlink, tXSymlink: // nlink, size, target
		if err := fields(4, 4); err != nil {
			return fail(err)
		}
		if u[1] > 4096 {
			return fail(fmt.Errorf("%w: symlink target of %d bytes", ErrCorrupt, u[1]))
		}
		t := make([]byte, u[1])
		if err := c.read(t); err != nil {
			return fail(err)
		}
		in.entry.Mode |= fs.ModeSymlink
		in.entry.Link = string(t)
	case tBlock, tXBlock:
		in.entry.Mode |= fs.ModeDevice
	case tChar, tXChar:
		in.entry.Mode |= fs.ModeDevice | fs.ModeCharDevice
	case tFifo, tXFifo:
		in.entry.Mode |= fs.ModeNamedPipe
	case tSocket, tXSocket:
		in.entry.Mode |= fs.ModeSocket
	default:
		return fail(fmt.Errorf("%w: inode type %d", ErrCorrupt, in.typ))
	}
	return in, nil
}

// fileData reads a file inode's block list (after the cursor) and fragment into pieces.
func (rd *Reader) fileData(c *cursor, e *Entry, start, size uint64, frag, fragOff uint32) error {
	bs := uint64(rd.Super.BlockSize)
	if size > maxBlocks*bs {
		return fmt.Errorf("%w: file of %d bytes", ErrCorrupt, size)
	}
	e.Size = int64(size)
	n := size / bs
	if frag == noFragment && size%bs != 0 {
		n++
	}
	pos := int64(start)
	if pos < 0 || pos > rd.Super.BytesUsed {
		return fmt.Errorf("%w: data at %d outside the image", ErrCorrupt, pos)
	}
	for i := uint64(0); i < n; i++ {
		v, err := c.u32()
		if err != nil {
			return err
		}
		stored := int64(v &^ uncompressed)
		if v&^(uncompressed|(uncompressed-1)) != 0 || stored > int64(bs) || pos+stored > rd.Super.BytesUsed {
			return fmt.Errorf("%w: data block %d (%#x) at %d", ErrCorrupt, i, v, pos)
		}
		if stored == 0 {
			continue // sparse: zeros
		}
		fo := int64(i * bs)
		e.Pieces = append(e.Pieces, Piece{FileOffset: fo, Length: min(int64(bs), int64(size)-fo), Offset: pos, InFrame: v&uncompressed == 0})
		pos += stored
	}
	if frag == noFragment {
		return nil
	}
	tail := int64(size - n*bs)
	if tail == 0 || tail >= int64(bs) {
		return fmt.Errorf("%w: fragment %d for a %d-byte tail", ErrCorrupt, frag, tail)
	}
	fstart, fsize, err := rd.fragment(frag)
	if err != nil {
		return err
	}
	if int64(fragOff)+tail > int64(bs) || (fsize&uncompressed != 0 && int64(fragOff)+tail > int64(fsize&^uncompressed)) {
		return fmt.Errorf("%w: %d-byte tail at %d of fragment %d", ErrCorrupt, tail, fragOff, frag)
	}
	e.Pieces = append(e.Pieces, Piece{FileOffset: int64(n * bs), Length: tail, Offset: fstart, Within: int64(fragOff), InFrame: fsize&uncompressed == 0})
	return nil
}

// fragment returns the position and stored size word of fragment block i.
func (rd *Reader) fragment(i uint32) (int64, uint32, error) {
	if i >= rd.Super.Fragments {
		return 0, 0, fmt.Errorf("%w: fragment %d of %d", ErrCorrupt, i, rd.Super.Fragments)
	}
	var loc [8]byte
	at := rd.Super.FragmentTable + int64(i/512)*8
	if rd.Super.FragmentTable < 0 || at+8 > rd.Super.BytesUsed {
		return 0, 0, fmt.Errorf("%w: fragment table at %d", ErrCorrupt, rd.Super.FragmentTable)
	}
	if err := readFull(rd.r, loc[:], at); err != nil {
		return 0, 0, err
	}
	c, err := rd.cursor(int64(binary.LittleEndian.Uint64(loc[:])), int(i%512)*16)
	if err != nil {
		return 0, 0, fmt.Errorf("fragment %d: %w", i, err)
	}
	start, err := c.u64()
	if err != nil {
		return 0, 0, err
	}
	size, err := c.u32()
	if err != nil {
		return 0, 0, err
	}
	stored := int64(size &^ uncompressed)
	if size&^(uncompressed|(uncompressed-1)) != 0 || stored == 0 || stored > int64(rd.Super.BlockSize) || int64(start) < 0 || int64(start)+stored > rd.Super.BytesUsed {
		return 0, 0, fmt.Errorf("%w: fragment %d (%d bytes at %d)", ErrCorrupt, i, stored, start)
	}
	return int64(start), size, nil
}

// Walk calls fn for every inode reachable from the root, the root first, directories before
// their entries, entries in the directory's (sorted) order. A directory reached twice is an error.
func (rd *Reader) Walk(fn func(Entry) error) error {
	rd.work = 0
	root, err := rd.inode(rd.Super.RootInode)
	if err != nil {
		return fmt.Errorf("squashfs: root: %w", err)
	}
	if root.entry.Mode&fs.ModeDir == 0 {
		return fmt.Errorf("%w: the root inode is not a directory", ErrCorrupt)
	}
	seen := map[uint64]bool{rd.Super.RootInode: true}
	return rd.walk(root, "", 0, seen, fn)
}

func (rd *Reader) walk(dir *inode, p string, depth int, seen map[uint64]bool, fn func(Entry) error) error {
	dir.entry.Path = p
	if err := fn(dir.entry); err != nil {
		return err
	}
	if depth > maxDepth {
		return fmt.Errorf("%w: directories nested deeper than %d at %s", ErrCorrupt, maxDepth, p)
	}
	if dir.dirSize <= 3 {
		return nil
	}
	c, err := rd.cursor(rd.Super.DirectoryTable+int64(dir.dirBlock), int(dir.dirOff))
	if err != nil {
		return fmt.Errorf("squashfs: directory %s: %w", p, err)
	}
	left := int64(dir.dirSize) - 3
	hdr := make([]byte, 12)
	ent := make([]byte, 8)
	name := make([]byte, 256)
	le := binary.LittleEndian
	for left > 0 {
		if left < 12 {
			return fmt.Errorf("%w: directory %s: %d bytes left for a header", ErrCorrupt, p, left)
		}
		if err := c.read(hdr); err != nil {
			return fmt.Errorf("squashfs: directory %s: %w", p, err)
		}
		left -= 12
		count, start := le.Uint32(hdr)+1, le.Uint32(hdr[4:])
		if count > 256 {
			return fmt.Errorf("%w: directory %s: header of %d entries", ErrCorrupt, p, count)
		}
		for ; count > 0; count-- {
			if left < 8 {
				return fmt.Errorf("%w: directory %s ends inside an entry", ErrCorrupt, p)
			}
			if err := c.read(ent); err != nil {
				return fmt.Errorf("squashfs: directory %s: %w", p, err)
			}
			n := int64(le.Uint16(ent[6:])) + 1
			if n > 256 {
				return fmt.Errorf("%w: directory %s: name of %d bytes", ErrCorrupt, p, n)
			}
			if left < 8+n {
				return fmt.Errorf("%w: directory %s ends inside a name", ErrCorrupt, p)
			}
			left -= 8 + n
			if err := c.read(name[:n]); err != nil {
				return fmt.Errorf("squashfs: directory %s: %w", p, err)
			}
			nm := string(name[:n])
			if nm == "." || nm == ".." || bytes.IndexByte(name[:n], '/') >= 0 || bytes.IndexByte(name[:n], 0) >= 0 {
				return fmt.Errorf("%w: directory %s: entry named %q", ErrCorrupt, p, nm)
			}
			ref := uint64(start)<<16 | uint64(le.Uint16(ent))
			child, err := rd.inode(ref)
			if err != nil {
				return fmt.Errorf("squashfs: %s: %w", path.Join(p, nm), err)
			}
			cp := path.Join(p, nm)
			if child.entry.Mode&fs.ModeDir != 0 {
				if seen[ref] {
					return fmt.Errorf("%w: directory %s reached twice (a loop)", ErrCorrupt, cp)
				}
				seen[ref] = true
				if err := rd.walk(child, cp, depth+1, seen, fn); err != nil {
					return err
				}
				continue
			}
			child.entry.Path = cp
			if err := fn(child.entry); err != nil {
				return err
			}
		}
	}
	return nil
}

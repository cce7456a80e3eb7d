package erofs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Layout is an inode's data layout (i_format bits 1-3).
type Layout uint8

const (
	FlatPlain         Layout = 0 // data in consecutive blocks
	CompressedFull    Layout = 1 // compressed, 8-byte lcluster indexes
	FlatInline        Layout = 2 // consecutive blocks, the last one packed after the inode
	CompressedCompact Layout = 3 // compressed, compact (2- and 4-byte) lcluster indexes
	ChunkBased        Layout = 4 // a table of chunks (block map or chunk indexes)
)

func (l Layout) String() string {
	switch l {
	case FlatPlain:
		return "flat-plain"
	case CompressedFull:
		return "compressed-full"
	case FlatInline:
		return "flat-inline"
	case CompressedCompact:
		return "compressed-compact"
	case ChunkBased:
		return "chunk-based"
	}
	return fmt.Sprintf("layout(%d)", uint8(l))
}

// Compressed tells whether the layout has lcluster indexes.
func (l Layout) Compressed() bool { return l == CompressedFull || l == CompressedCompact }

// Unix file type bits of Inode.Mode.
const (
	modeType    = 0xf000
	modeDir     = 0x4000
	modeReg     = 0x8000
	modeSymlink = 0xa000
	modeChar    = 0x2000
	modeBlock   = 0x6000
	modeFIFO    = 0x1000
	modeSocket  = 0xc000
)

// Inode is a decoded on-disk inode (compact 32-byte or extended 64-byte form).
type Inode struct {
	Nid       uint64
	Extended  bool
	Layout    Layout
	Mode      uint16 // Unix mode: type and permission bits
	Size      uint64
	Nlink     uint32
	UID, GID  uint32
	Mtime     uint64 // seconds; compact inodes add the superblock's epoch
	MtimeNsec uint32
	Ino       uint32
	// XattrCount is i_xattr_icount; xattrs are skipped (XattrSize bytes after the inode).
	XattrCount uint16
	// RawU is the 32-bit union: start block (flat), block count (compressed), rdev, or
	// chunk format (chunk-based).
	RawU uint32

	pos   int64 // image offset of the inode
	isize int64 // 32 or 64
	xsize int64 // inline xattr bytes after it
}

// Offset is the inode's position in the image.
func (in *Inode) Offset() int64 { return in.pos }

// XattrSize is the size of the inline xattr area that follows the inode.
func (in *Inode) XattrSize() int64 { return in.xsize }

// metaEnd is where the inode's trailing metadata (tail data, indexes) starts.
func (in *Inode) metaEnd() int64 { return in.pos + in.isize + in.xsize }

func (in *Inode) IsDir() bool     { return in.Mode&modeType == modeDir }
func (in *Inode) IsRegular() bool { return in.Mode&modeType == modeReg }
func (in *Inode) IsSymlink() bool { return in.Mode&modeType == modeSymlink }

// HasData tells whether the inode's Size counts data bytes (regular files, directories,
// symlinks); device, FIFO and socket inodes have none.
func (in *Inode) HasData() bool { return in.IsRegular() || in.IsDir() || in.IsSymlink() }

// FileMode converts Mode to an fs.FileMode.
func (in *Inode) FileMode() fs.FileMode {
	m := fs.FileMode(in.Mode & 0o777)
	if in.Mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if in.Mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if in.Mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch in.Mode & modeType {
	case modeDir:
		m |= fs.ModeDir
	case modeSymlink:
		m |= fs.ModeSymlink
	case modeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case modeBlock:
		m |= fs.ModeDevice
	case modeFIFO:
		m |= fs.ModeNamedPipe
	case modeSocket:
		m |= fs.ModeSocket
	}
	return m
}

// Inode reads the inode of a node id (its offset is MetaBlkAddr*blocksize + 32*nid).
func (im *Image) Inode(nid uint64) (*Inode, error) {
	if nid > uint64(im.size)/32 {
		return nil, formatErr("nid %d beyond the image", nid)
	}
	pos := int64(im.sb.MetaBlkAddr)<<im.sb.BlockSizeBits + int64(nid)*32
	var b [64]byte
	if err := im.readMeta(b[:32], pos); err != nil {
		return nil, fmt.Errorf("erofs: inode %d: %w", nid, err)
	}
	le := binary.LittleEndian
	format := le.Uint16(b[0:])
	in := &Inode{
		Nid:        nid,
		pos:        pos,
		Extended:   format&1 != 0,
		Layout:     Layout(format >> 1 & 7),
		XattrCount: le.Uint16(b[2:]),
		Mode:       le.Uint16(b[4:]),
	}
	if format&^0x1f != 0 {
		return nil, formatErr("inode %d: format %#x has unknown bits", nid, format)
	}
	if in.Layout > ChunkBased {
		return nil, formatErr("inode %d: unknown data layout %d", nid, in.Layout)
	}
	if in.Extended {
		in.isize = 64
		if err := im.readMeta(b[32:64], pos+32); err != nil {
			return nil, fmt.Errorf("erofs: inode %d: %w", nid, err)
		}
		in.Size = le.Uint64(b[8:])
		in.RawU = le.Uint32(b[16:])
		in.Ino = le.Uint32(b[20:])
		in.UID = le.Uint32(b[24:])
		in.GID = le.Uint32(b[28:])
		in.Mtime = le.Uint64(b[32:])
		in.MtimeNsec = le.Uint32(b[40:])
		in.Nlink = le.Uint32(b[44:])
	} else {
		in.isize = 32
		in.Nlink = uint32(le.Uint16(b[6:]))
		if format&0x10 != 0 && in.Mode&modeType != modeDir {
			in.Nlink = 1 // NLINK_1 bit: the field holds other data
		}
		in.Size = uint64(le.Uint32(b[8:]))
		in.Mtime = im.sb.Epoch + uint64(le.Uint32(b[12:]))
		in.MtimeNsec = im.sb.EpochNsec
		in.RawU = le.Uint32(b[16:])
		in.Ino = le.Uint32(b[20:])
		in.UID = uint32(le.Uint16(b[24:]))
		in.GID = uint32(le.Uint16(b[26:]))
	}
	if in.XattrCount > 0 {
		in.xsize = 12 + 4*int64(in.XattrCount-1)
	}
	if in.metaEnd() > im.size {
		return nil, formatErr("inode %d: inode and xattrs end past the image", nid)
	}
	if !in.HasData() && in.Size != 0 {
		// Device nodes keep rdev in RawU; a size there would be meaningless.
		return nil, formatErr("inode %d: special file with size %d", nid, in.Size)
	}
	if in.Size > 1<<50 {
		return nil, formatErr("inode %d: size %d too large", nid, in.Size)
	}
	return in, nil
}

// Dirent is one directory entry.
type Dirent struct {
	Name string
	Nid  uint64
	Type uint8 // EROFS file type: 1 regular, 2 directory, 3 char, 4 block, 5 fifo, 6 socket, 7 symlink
}

// ReadDir lists a directory's entries in on-disk (sorted) order, "." and ".." included.
func (im *Image) ReadDir(dir *Inode) ([]Dirent, error) {
	if !dir.IsDir() {
		return nil, fmt.Errorf("erofs: inode %d is not a directory", dir.Nid)
	}
	if dir.Size > 1<<32 || int64(dir.Size) > 64*im.size {
		return nil, formatErr("directory %d of %d bytes", dir.Nid, dir.Size)
	}
	data, err := im.readAll(dir)
	if err != nil {
		return nil, fmt.Errorf("erofs: directory %d: %w", dir.Nid, err)
	}
	dbs := int(im.sb.BlockSize()) << im.sb.DirBlockBits
	var out []Dirent
	for start := 0; start < len(data); start += dbs {
		blk := data[start:min(start+dbs, len(data))]
		if len(blk) < 12 {
			return nil, formatErr("directory %d: block at %d of %d bytes", dir.Nid, start, len(blk))
		}
		first := int(binary.LittleEndian.Uint16(blk[8:]))
		if first < 12 || first%12 != 0 || first > len(blk) {
			return nil, formatErr("directory %d: first name offset %d", dir.Nid, first)
		}
		n := first / 12
		for i := 0; i < n; i++ {
			e := blk[12*i:]
			nameoff := int(binary.LittleEndian.Uint16(e[8:]))
			end := len(blk)
			if i+1 < n {
				end = int(binary.LittleEndian.Uint16(blk[12*(i+1)+8:]))
			}
			if nameoff < first || end > len(blk) || nameoff >= end {
				return nil, formatErr("directory %d: name %d at %d..%d in a block of %d", dir.Nid, i, nameoff, end, len(blk))
			}
			name := blk[nameoff:end]
			if i+1 == n {
				// The last name runs to the end of the block or to the first NUL.
				if z := bytes.IndexByte(name, 0); z >= 0 {
					name = name[:z]
				}
			}
			if len(name) == 0 || len(name) > 255 {
				return nil, formatErr("directory %d: name of %d bytes", dir.Nid, len(name))
			}
			out = append(out, Dirent{Name: string(name), Nid: binary.LittleEndian.Uint64(e[0:]), Type: e[10]})
		}
	}
	return out, nil
}

// Root returns the root directory's inode.
func (im *Image) Root() (*Inode, error) { return im.Inode(im.sb.RootNid) }

// Packed returns the packed inode that holds fragments, or nil when the image has none.
func (im *Image) Packed() (*Inode, error) {
	if !im.sb.HasFragments() {
		return nil, nil
	}
	in, err := im.Inode(im.sb.PackedNid)
	if err != nil {
		return nil, fmt.Errorf("erofs: packed inode: %w", err)
	}
	return in, nil
}

// maxDepth bounds directory recursion against crafted images.
const maxDepth = 4096

// Walk calls fn for every inode reachable from the root, depth first in directory order, with
// slash-separated paths relative to the root ("." for the root itself). A non-nil error from
// fn stops the walk and is returned; fs.SkipDir from a directory skips its entries.
func (im *Image) Walk(fn func(path string, in *Inode) error) error {
	root, err := im.Root()
	if err != nil {
		return err
	}
	if !root.IsDir() {
		return formatErr("root inode %d is not a directory", root.Nid)
	}
	onPath := map[uint64]bool{}
	// A walk visits each dirent once; more visits than the image has room for dirents means
	// directories shared many times over (crafted), which would take exponential time.
	budget := im.size/12 + 16
	// Directory bytes read are bounded the same way: each directory is read once per path to
	// it, and directories (stored uncompressed) cannot hold more than the image.
	dirBytes := 4*im.size + 1<<20
	var walk func(p string, in *Inode, depth int) error
	walk = func(p string, in *Inode, depth int) error {
		err := fn(p, in)
		if err == fs.SkipDir && in.IsDir() {
			return nil
		}
		if err != nil || !in.IsDir() {
			return err
		}
		if depth > maxDepth || onPath[in.Nid] {
			return formatErr("directory loop or depth over %d at %s", maxDepth, p)
		}
		if dirBytes -= int64(in.Size); dirBytes < 0 {
			return formatErr("more directory data than the image can hold (shared directories?)")
		}
		onPath[in.Nid] = true
		defer delete(onPath, in.Nid)
		ents, err := im.ReadDir(in)
		if err != nil {
			return fmt.Errorf("%w (at %s)", err, p)
		}
		for _, e := range ents {
			if e.Name == "." || e.Name == ".." {
				continue
			}
			if strings.ContainsRune(e.Name, '/') {
				return formatErr("name %q with a slash in %s", e.Name, p)
			}
			if budget--; budget < 0 {
				return formatErr("more directory entries than the image can hold (shared directories?)")
			}
			child, err := im.Inode(e.Nid)
			if err != nil {
				return fmt.Errorf("%w (at %s)", err, path.Join(p, e.Name))
			}
			if err := walk(path.Join(p, e.Name), child, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(".", root, 0)
}

// Lookup finds the inode of a slash-separated path relative to the root (symlinks not
// followed).
func (im *Image) Lookup(p string) (*Inode, error) {
	in, err := im.Root()
	if err != nil {
		return nil, err
	}
	for _, name := range strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/") {
		if name == "" {
			continue
		}
		ents, err := im.ReadDir(in)
		if err != nil {
			return nil, err
		}
		found := false
		for _, e := range ents {
			if e.Name == name {
				if in, err = im.Inode(e.Nid); err != nil {
					return nil, err
				}
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("erofs: %s: %w", p, fs.ErrNotExist)
		}
	}
	return in, nil
}

// Readlink returns a symlink's target.
func (im *Image) Readlink(in *Inode) (string, error) {
	if !in.IsSymlink() {
		return "", fmt.Errorf("erofs: inode %d is not a symlink", in.Nid)
	}
	if in.Size > 4096 {
		return "", formatErr("symlink %d of %d bytes", in.Nid, in.Size)
	}
	b, err := im.readAll(in)
	return string(b), err
}

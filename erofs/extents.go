package erofs

import (
	"encoding/binary"
	"fmt"
)

// ExtentKind says where an extent's bytes come from.
type ExtentKind uint8

const (
	// Plain bytes are stored as they are at PhysOffset (Algorithm None).
	Plain ExtentKind = iota
	// Compressed: the cluster at PhysOffset..+PhysLength decodes (Algorithm) to bytes whose
	// first Length are the extent's.
	Compressed
	// Hole: zeros (a chunk without a block).
	Hole
	// Fragment: the bytes are in the packed inode's content from PackedOffset on.
	Fragment
)

func (k ExtentKind) String() string {
	switch k {
	case Plain:
		return "plain"
	case Compressed:
		return "compressed"
	case Hole:
		return "hole"
	case Fragment:
		return "fragment"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Extent is one run of a file's bytes and the physical cluster that yields it. A file's
// extents are in file order and cover [0, Size) exactly once.
type Extent struct {
	FileOffset int64 // first byte of the file this extent yields
	Length     int64 // bytes of the file it yields
	Kind       ExtentKind
	Algorithm  Algorithm // None for Plain, Hole and Fragment
	// PhysOffset and PhysLength: the cluster in the image. Compressed clusters are whole
	// blocks (pclusters) except inline ones; with FeatureIncompatZeroPadding their stream is
	// right-aligned, zero bytes before it. For Plain, PhysLength is the bytes used.
	PhysOffset int64
	PhysLength int64
	// Inline: the cluster sits in the metadata after the inode (flat tail packing or
	// ztailpacking), not in blocks of its own.
	Inline bool
	// Partial: the cluster decodes to more than Length bytes; the extent is its first Length
	// (a deduplicated reference, mkfs.erofs -Ededupe).
	Partial bool
	// Interlaced (Plain in a compressed inode): the block holds the bytes rotated so that
	// file offset o sits at in-block offset o % blocksize.
	Interlaced bool
	// PackedOffset (Fragment): where the bytes start in the packed inode's content.
	PackedOffset int64
	// Device (chunk-based): 0 for the image itself, else an extra device.
	Device uint16
}

// Extents lists where a file's bytes live. Files without data (devices, FIFOs, sockets) and
// empty files have none.
func (im *Image) Extents(in *Inode) ([]Extent, error) {
	if in.Size == 0 || !in.HasData() {
		return nil, nil
	}
	var ext []Extent
	var err error
	switch in.Layout {
	case FlatPlain, FlatInline:
		ext, err = im.flatExtents(in)
	case ChunkBased:
		ext, err = im.chunkExtents(in)
	case CompressedFull, CompressedCompact:
		ext, err = im.compressedExtents(in)
	default:
		err = formatErr("unknown data layout %d", in.Layout)
	}
	if err != nil {
		return nil, fmt.Errorf("erofs: inode %d (%s): %w", in.Nid, in.Layout, err)
	}
	return ext, nil
}

func (im *Image) flatExtents(in *Inode) ([]Extent, error) {
	bs := im.sb.BlockSize()
	size := int64(in.Size)
	nblocks := (size + bs - 1) / bs
	blocksPart := size
	if in.Layout == FlatInline {
		blocksPart = (nblocks - 1) * bs
	}
	var out []Extent
	if blocksPart > 0 {
		start := int64(in.RawU) << im.sb.BlockSizeBits
		if start+blocksPart > im.size {
			return nil, formatErr("data at block %d+%d bytes past the image", in.RawU, blocksPart)
		}
		out = append(out, Extent{Length: blocksPart, Kind: Plain, Algorithm: None, PhysOffset: start, PhysLength: blocksPart})
	}
	if tail := size - blocksPart; tail > 0 {
		pos := in.metaEnd()
		if pos%bs+tail > bs {
			return nil, formatErr("inline tail of %d bytes at block offset %d crosses its block", tail, pos%bs)
		}
		if pos+tail > im.size {
			return nil, formatErr("inline tail past the image")
		}
		out = append(out, Extent{FileOffset: blocksPart, Length: tail, Kind: Plain, Algorithm: None,
			PhysOffset: pos, PhysLength: tail, Inline: true})
	}
	return out, nil
}

const (
	chunkFormatBlkbitsMask = 0x1f
	chunkFormatIndexes     = 0x20
	chunkFormat48Bit       = 0x40
	nullAddr32             = 0xffffffff
)

func (im *Image) chunkExtents(in *Inode) ([]Extent, error) {
	format := in.RawU & 0xffff
	if format&^(chunkFormatBlkbitsMask|chunkFormatIndexes|chunkFormat48Bit) != 0 {
		return nil, formatErr("chunk format %#x has unknown bits", format)
	}
	if format&chunkFormat48Bit != 0 {
		return nil, unsupportedErr("48-bit chunk indexes")
	}
	chunkBits := uint(im.sb.BlockSizeBits) + uint(format&chunkFormatBlkbitsMask)
	if chunkBits > 40 {
		return nil, formatErr("chunk size 2^%d", chunkBits)
	}
	cs := int64(1) << chunkBits
	size := int64(in.Size)
	n := (size + cs - 1) / cs
	unit, pos := int64(4), in.metaEnd()
	if format&chunkFormatIndexes != 0 {
		unit, pos = 8, (pos+7)&^7
	}
	if n > (im.size-pos)/unit {
		return nil, formatErr("%d chunks do not fit in the image", n)
	}
	table := make([]byte, n*unit)
	if err := im.readMeta(table, pos); err != nil {
		return nil, err
	}
	out := make([]Extent, 0, n)
	for i := int64(0); i < n; i++ {
		e := Extent{FileOffset: i * cs, Length: min(cs, size-i*cs), Algorithm: None}
		var blk uint32
		if unit == 8 {
			r := table[8*i:]
			if hi := binary.LittleEndian.Uint16(r); hi != 0 {
				return nil, formatErr("chunk %d: start block high bits %#x without the 48-bit feature", i, hi)
			}
			e.Device = binary.LittleEndian.Uint16(r[2:])
			blk = binary.LittleEndian.Uint32(r[4:])
		} else {
			blk = binary.LittleEndian.Uint32(table[4*i:])
		}
		if blk == nullAddr32 {
			e.Kind = Hole
		} else {
			e.Kind = Plain
			e.PhysOffset = int64(blk) << im.sb.BlockSizeBits
			e.PhysLength = e.Length
			if e.Device == 0 && e.PhysOffset+e.Length > im.size {
				return nil, formatErr("chunk %d at block %d past the image", i, blk)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

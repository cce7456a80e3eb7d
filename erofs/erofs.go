// Package erofs reads EROFS images: the superblock, inodes, directories and every data layout
// mkfs.erofs 1.8 writes (flat, tail-packed, chunk-based, and compressed with full or compact
// lcluster indexes, big pclusters, ztailpacking, fragments and dedupe).
//
// Its job is to say where each file's bytes live in the image: Image.Extents lists, for a file,
// the physical clusters (offset and length in the image, algorithm) and the part of the file
// each one yields, so that a caller can replace compressed clusters by their plain content and
// reproduce them later. Open reads a file's content for the uncompressed layouts, LZ4 and LZMA
// (MicroLZMA) clusters.
//
// The on-disk format is the one of erofs-utils' include/erofs_fs.h; the package imports nothing
// of ours and reads through an io.ReaderAt.
package erofs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"sync"
)

// SuperblockOffset is where the superblock starts in the image (room for boot sectors before).
const SuperblockOffset = 1024

// Magic is the superblock's magic number.
const Magic = 0xE0F5E1E2

// Feature bits of the superblock's FeatureCompat field.
const (
	FeatureCompatSBChecksum  = 0x1
	FeatureCompatMtime       = 0x2
	FeatureCompatXattrFilter = 0x4
)

// Feature bits of the superblock's FeatureIncompat field. Some bits mean two things: one for
// the superblock, one for the inodes' compression headers.
const (
	FeatureIncompatZeroPadding     = 0x01 // compressed data is right-aligned in its pcluster
	FeatureIncompatComprCfgs       = 0x02 // per-algorithm configs follow the superblock
	FeatureIncompatBigPcluster     = 0x02
	FeatureIncompatChunkedFile     = 0x04
	FeatureIncompatDeviceTable     = 0x08
	FeatureIncompatComprHead2      = 0x08
	FeatureIncompatZtailpacking    = 0x10
	FeatureIncompatFragments       = 0x20
	FeatureIncompatDedupe          = 0x20
	FeatureIncompatXattrPrefixes   = 0x40
	FeatureIncompat48Bit           = 0x80
	FeatureIncompatMetabox         = 0x100
	featureIncompatSupported       = 0x7f
	featureIncompatKnownButRefused = FeatureIncompat48Bit | FeatureIncompatMetabox
)

// ErrFormat is wrapped by every error about a damaged or unexpected image.
var ErrFormat = errors.New("erofs: bad image")

// ErrUnsupported is wrapped by errors about valid features this package does not read.
var ErrUnsupported = errors.New("erofs: unsupported feature")

func formatErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, a...)...)
}

func unsupportedErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, a...)...)
}

// Algorithm is a compression algorithm of a physical cluster.
type Algorithm uint8

const (
	LZ4     Algorithm = 0
	LZMA    Algorithm = 1 // MicroLZMA: raw LZMA1, the first byte holding the negated properties
	Deflate Algorithm = 2 // raw deflate
	Zstd    Algorithm = 3
	// None: the cluster holds the file's bytes as they are.
	None Algorithm = 0xff
)

func (a Algorithm) String() string {
	switch a {
	case LZ4:
		return "lz4"
	case LZMA:
		return "lzma"
	case Deflate:
		return "deflate"
	case Zstd:
		return "zstd"
	case None:
		return "none"
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// Superblock is the decoded superblock.
type Superblock struct {
	Checksum        uint32 // crc32c of the superblock's block from SuperblockOffset, if FeatureCompatSBChecksum
	FeatureCompat   uint32
	FeatureIncompat uint32
	BlockSizeBits   uint8
	ExtSlots        uint8 // superblock size = 128 + 16*ExtSlots
	RootNid         uint64
	Inodes          uint64
	Epoch           uint64 // build time (seconds); compact inodes' mtime is relative to it
	EpochNsec       uint32
	Blocks          uint64
	MetaBlkAddr     uint32 // block of nid 0
	XattrBlkAddr    uint32 // shared xattrs
	UUID            [16]byte
	VolumeName      string
	// ComprAlgs is the bitmap of algorithms (1<<LZMA, ...) when FeatureIncompatComprCfgs is set;
	// otherwise images are LZ4-only and LZ4MaxDistance holds the raw field.
	ComprAlgs      uint16
	LZ4MaxDistance uint16
	ExtraDevices   uint16
	DevtSlotOff    uint16
	DirBlockBits   uint8
	XattrPrefixes  uint8
	PackedNid      uint64 // inode holding the fragments, if FeatureIncompatFragments
	// LZMADictSize and LZMAFormat come from the LZMA config after the superblock (0 when absent).
	LZMADictSize uint32
	LZMAFormat   uint16
	// DeflateWindowBits from the deflate config (0 when absent).
	DeflateWindowBits uint8
	// LZ4PclusterBlocks is the LZ4 config's max_pclusterblks (0 when absent).
	LZ4PclusterBlocks uint16
}

// BlockSize is the filesystem block size in bytes.
func (sb Superblock) BlockSize() int64 { return 1 << sb.BlockSizeBits }

// HasFragments tells whether a packed inode holds file tails (mkfs.erofs -Efragments).
func (sb Superblock) HasFragments() bool {
	return sb.FeatureIncompat&FeatureIncompatFragments != 0 && sb.PackedNid != 0
}

// Image is an opened EROFS image.
type Image struct {
	r    io.ReaderAt
	size int64 // image size as the superblock gives it (blocks), for bounds checks
	sb   Superblock

	packedOnce sync.Once
	packed     *fileReader
	packedErr  error
}

// Open reads and checks the superblock (magic, block size, checksum, features).
func Open(r io.ReaderAt) (*Image, error) {
	var b [128]byte
	if _, err := r.ReadAt(b[:], SuperblockOffset); err != nil {
		return nil, fmt.Errorf("erofs: read superblock: %w", err)
	}
	le := binary.LittleEndian
	if m := le.Uint32(b[0:]); m != Magic {
		return nil, formatErr("superblock magic %#x, want %#x (not an EROFS image?)", m, Magic)
	}
	sb := Superblock{
		Checksum:        le.Uint32(b[4:]),
		FeatureCompat:   le.Uint32(b[8:]),
		BlockSizeBits:   b[12],
		ExtSlots:        b[13],
		RootNid:         uint64(le.Uint16(b[14:])),
		Inodes:          le.Uint64(b[16:]),
		Epoch:           le.Uint64(b[24:]),
		EpochNsec:       le.Uint32(b[32:]),
		Blocks:          uint64(le.Uint32(b[36:])),
		MetaBlkAddr:     le.Uint32(b[40:]),
		XattrBlkAddr:    le.Uint32(b[44:]),
		VolumeName:      string(bytes.TrimRight(b[64:80], "\x00")),
		FeatureIncompat: le.Uint32(b[80:]),
		ExtraDevices:    le.Uint16(b[86:]),
		DevtSlotOff:     le.Uint16(b[88:]),
		DirBlockBits:    b[90],
		XattrPrefixes:   b[91],
		PackedNid:       le.Uint64(b[96:]),
	}
	copy(sb.UUID[:], b[48:64])
	if sb.BlockSizeBits < 9 || sb.BlockSizeBits > 16 {
		return nil, formatErr("block size 2^%d out of range 2^9..2^16", sb.BlockSizeBits)
	}
	if sb.DirBlockBits > 4 {
		return nil, formatErr("directory block size shift %d out of range", sb.DirBlockBits)
	}
	if f := sb.FeatureIncompat & featureIncompatKnownButRefused; f != 0 {
		return nil, unsupportedErr("incompatible features %#x (48-bit layout or metabox, erofs-utils 1.9)", f)
	}
	if f := sb.FeatureIncompat &^ featureIncompatSupported; f != 0 {
		return nil, unsupportedErr("unknown incompatible features %#x", f)
	}
	if sb.FeatureIncompat&FeatureIncompatComprCfgs != 0 {
		sb.ComprAlgs = le.Uint16(b[84:])
	} else {
		sb.LZ4MaxDistance = le.Uint16(b[84:])
	}
	blksz := int64(1) << sb.BlockSizeBits
	im := &Image{r: r, sb: sb, size: int64(sb.Blocks) << sb.BlockSizeBits}
	if n, ok := readerSize(r); ok && n < im.size {
		// A truncated image: bound every read and allocation by what is really there.
		im.size = n
	}
	if im.size < SuperblockOffset+128 {
		return nil, formatErr("image of %d blocks cannot hold its superblock", sb.Blocks)
	}
	if sb.FeatureCompat&FeatureCompatSBChecksum != 0 && blksz > SuperblockOffset {
		blk := make([]byte, blksz-SuperblockOffset)
		if _, err := r.ReadAt(blk, SuperblockOffset); err != nil {
			return nil, fmt.Errorf("erofs: read superblock block: %w", err)
		}
		le.PutUint32(blk[4:], 0)
		// The kernel's crc32c(~0, ...) keeps the register without the final inversion.
		if got := ^crc32.Checksum(blk, castagnoli); got != sb.Checksum {
			return nil, formatErr("superblock checksum %#08x, computed %#08x", sb.Checksum, got)
		}
	}
	if err := im.readComprCfgs(); err != nil {
		return nil, err
	}
	return im, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// readerSize tells the size of readers that know it (bytes.Reader, io.SectionReader, os.File).
func readerSize(r io.ReaderAt) (int64, bool) {
	switch v := r.(type) {
	case interface{ Size() int64 }:
		return v.Size(), true
	case interface{ Stat() (fs.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() {
			return fi.Size(), true
		}
	}
	return 0, false
}

// readComprCfgs reads the per-algorithm configs: after the superblock, for each algorithm bit
// set, a 4-aligned 16-bit length and that many bytes.
func (im *Image) readComprCfgs() error {
	sb := &im.sb
	if sb.FeatureIncompat&FeatureIncompatComprCfgs == 0 {
		return nil
	}
	if sb.ComprAlgs&^0xf != 0 {
		return unsupportedErr("compression algorithms bitmap %#x", sb.ComprAlgs)
	}
	off := int64(SuperblockOffset) + 128 + 16*int64(sb.ExtSlots)
	for alg := 0; alg < 4; alg++ {
		if sb.ComprAlgs&(1<<alg) == 0 {
			continue
		}
		off = (off + 3) &^ 3
		var l [2]byte
		if err := im.readMeta(l[:], off); err != nil {
			return fmt.Errorf("erofs: %s config: %w", Algorithm(alg), err)
		}
		n := int64(binary.LittleEndian.Uint16(l[:]))
		if n == 0 || n > 256 {
			return formatErr("%s config length %d", Algorithm(alg), n)
		}
		d := make([]byte, n)
		if err := im.readMeta(d, off+2); err != nil {
			return fmt.Errorf("erofs: %s config: %w", Algorithm(alg), err)
		}
		off += 2 + n
		switch Algorithm(alg) {
		case LZ4:
			if n >= 4 {
				sb.LZ4MaxDistance = binary.LittleEndian.Uint16(d)
				sb.LZ4PclusterBlocks = binary.LittleEndian.Uint16(d[2:])
			}
		case LZMA:
			if n >= 6 {
				sb.LZMADictSize = binary.LittleEndian.Uint32(d)
				sb.LZMAFormat = binary.LittleEndian.Uint16(d[4:])
			}
		case Deflate:
			sb.DeflateWindowBits = d[0]
		}
	}
	return nil
}

// Superblock returns the decoded superblock.
func (im *Image) Superblock() Superblock { return im.sb }

// readMeta reads len(p) bytes at off, which must lie inside the image.
func (im *Image) readMeta(p []byte, off int64) error {
	if off < 0 || off+int64(len(p)) > im.size || off+int64(len(p)) < off {
		return formatErr("metadata at %d+%d outside the image (%d bytes)", off, len(p), im.size)
	}
	n, err := im.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("erofs: read at %d: %w", off, err)
}

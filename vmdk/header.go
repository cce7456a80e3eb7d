package vmdk

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Sentinel errors; returned errors wrap one of them.
var (
	// ErrNotVMDK means the data does not start with the VMDK4 sparse magic.
	ErrNotVMDK = errors.New("vmdk: not a sparse VMDK extent")
	// ErrUnsupported means a valid image (or build) lacks something this
	// package needs: VMDK3/COWD, descriptor-only files, an unknown compression,
	// a layout the writer cannot reproduce, or cgo for zlib.
	ErrUnsupported = errors.New("vmdk: unsupported")
	// ErrCorrupt means the image contradicts the format or itself.
	ErrCorrupt = errors.New("vmdk: corrupt image")
	// ErrInvalidParams means a Params is inconsistent.
	ErrInvalidParams = errors.New("vmdk: invalid params")
	// ErrGrainMismatch means Encode wrote grains whose compressed size differs
	// from the one recorded in Params (see MismatchError).
	ErrGrainMismatch = errors.New("vmdk: re-encoded grains differ")
)

// Magic starts a VMDK4 sparse extent (hosted sparse and streamOptimized), as it appears on disk.
const Magic = "KDMV"

// Header flags and constants (VMware's "Virtual Disk Format 5.0" and qemu's
// block/vmdk.c).
const (
	FlagNLDetect   = 1 << 0  // newline detection characters are valid
	FlagRGD        = 1 << 1  // a redundant grain directory is present
	FlagZeroGrain  = 1 << 2  // grain table entry 1 means a zeroed grain
	FlagCompressed = 1 << 16 // grains are compressed
	FlagMarkers    = 1 << 17 // grains and metadata are preceded by markers

	CompressNone    = 0
	CompressDeflate = 1

	// GDAtEnd in the header's GDOffset means the footer holds the real header.
	GDAtEnd = ^uint64(0)

	SectorSize = 512

	markerEOS    = 0
	markerGT     = 1
	markerGD     = 2
	markerFooter = 3

	magicCOWD  = "COWD" // VMDK3 (ESX 2 vmfsSparse)
	headerLen  = 79     // magic + packed header fields
	grainMark  = 12     // lba (8) + size (4) before each compressed grain
	gteZeroed  = 1      // grain table entry for a zeroed grain (FlagZeroGrain)
	maxGrain   = 2048   // sectors (1 MiB): bounds the memory one grain takes
	maxGTEs    = 512    // entries per grain table, as qemu enforces
	maxDescLen = 1 << 20
)

// Header is the sparse extent header, field for field as stored (sizes and
// offsets in sectors of 512 bytes).
type Header struct {
	Version           uint32   `json:"version"`
	Flags             uint32   `json:"flags"`
	Capacity          uint64   `json:"capacity"`
	GrainSize         uint64   `json:"grainSize"`
	DescriptorOffset  uint64   `json:"descriptorOffset"`
	DescriptorSize    uint64   `json:"descriptorSize"`
	NumGTEsPerGT      uint32   `json:"numGTEsPerGT"`
	RGDOffset         uint64   `json:"rgdOffset"`
	GDOffset          uint64   `json:"gdOffset"`
	Overhead          uint64   `json:"overhead"`
	UncleanShutdown   uint8    `json:"uncleanShutdown,omitempty"`
	SingleEndLineChar uint8    `json:"singleEndLineChar"`
	NonEndLineChar    uint8    `json:"nonEndLineChar"`
	DoubleEndLineChar [2]uint8 `json:"doubleEndLineChar"`
	CompressAlgorithm uint16   `json:"compressAlgorithm"`
}

func parseHeader(b []byte) (Header, error) {
	if len(b) < headerLen {
		return Header{}, fmt.Errorf("%w: header: %d bytes, need %d", ErrNotVMDK, len(b), headerLen)
	}
	switch string(b[:4]) {
	case Magic:
	case magicCOWD:
		return Header{}, fmt.Errorf("%w: VMDK3 (COWD) extents", ErrUnsupported)
	default:
		return Header{}, fmt.Errorf("%w: magic %q", ErrNotVMDK, b[:4])
	}
	le := binary.LittleEndian
	h := Header{
		Version:           le.Uint32(b[4:]),
		Flags:             le.Uint32(b[8:]),
		Capacity:          le.Uint64(b[12:]),
		GrainSize:         le.Uint64(b[20:]),
		DescriptorOffset:  le.Uint64(b[28:]),
		DescriptorSize:    le.Uint64(b[36:]),
		NumGTEsPerGT:      le.Uint32(b[44:]),
		RGDOffset:         le.Uint64(b[48:]),
		GDOffset:          le.Uint64(b[56:]),
		Overhead:          le.Uint64(b[64:]),
		UncleanShutdown:   b[72],
		SingleEndLineChar: b[73],
		NonEndLineChar:    b[74],
		DoubleEndLineChar: [2]uint8{b[75], b[76]},
		CompressAlgorithm: le.Uint16(b[77:]),
	}
	return h, nil
}

// marshal returns the header's headerLen bytes, magic included.
func (h *Header) marshal() []byte {
	b := make([]byte, headerLen)
	le := binary.LittleEndian
	copy(b, Magic)
	le.PutUint32(b[4:], h.Version)
	le.PutUint32(b[8:], h.Flags)
	le.PutUint64(b[12:], h.Capacity)
	le.PutUint64(b[20:], h.GrainSize)
	le.PutUint64(b[28:], h.DescriptorOffset)
	le.PutUint64(b[36:], h.DescriptorSize)
	le.PutUint32(b[44:], h.NumGTEsPerGT)
	le.PutUint64(b[48:], h.RGDOffset)
	le.PutUint64(b[56:], h.GDOffset)
	le.PutUint64(b[64:], h.Overhead)
	b[72] = h.UncleanShutdown
	b[73] = h.SingleEndLineChar
	b[74] = h.NonEndLineChar
	b[75], b[76] = h.DoubleEndLineChar[0], h.DoubleEndLineChar[1]
	le.PutUint16(b[77:], h.CompressAlgorithm)
	return b
}

// geometry is what the header implies about tables and grains.
type geometry struct {
	grainBytes int64  // bytes per grain
	capBytes   int64  // guest size in bytes
	grains     uint64 // grains covering the guest
	gdEntries  uint64 // grain tables covering the guest
	gdSectors  uint64 // sectors one grain directory takes
	gtSectors  uint64 // sectors one grain table takes
}

// check validates the fields the reader relies on, bounding every size by
// the file size so that a hostile header cannot make it allocate much.
func (h *Header) check(fileSize int64) (geometry, error) {
	var g geometry
	if h.Version < 1 || h.Version > 3 {
		return g, fmt.Errorf("%w: version %d", ErrUnsupported, h.Version)
	}
	if h.Capacity == 0 {
		return g, fmt.Errorf("%w: capacity 0 (a descriptor file, not a sparse extent)", ErrUnsupported)
	}
	if h.GrainSize == 0 || h.GrainSize > maxGrain {
		return g, fmt.Errorf("%w: grain size %d sectors (want 1..%d)", ErrCorrupt, h.GrainSize, maxGrain)
	}
	if h.NumGTEsPerGT == 0 || h.NumGTEsPerGT > maxGTEs {
		return g, fmt.Errorf("%w: %d grain table entries per table (want 1..%d)", ErrCorrupt, h.NumGTEsPerGT, maxGTEs)
	}
	if h.Capacity > (1<<63-1)/SectorSize {
		return g, fmt.Errorf("%w: capacity %d sectors", ErrCorrupt, h.Capacity)
	}
	if h.CompressAlgorithm != CompressNone && h.CompressAlgorithm != CompressDeflate {
		return g, fmt.Errorf("%w: compression algorithm %d", ErrUnsupported, h.CompressAlgorithm)
	}
	g.grainBytes = int64(h.GrainSize) * SectorSize
	g.capBytes = int64(h.Capacity) * SectorSize
	g.grains = (h.Capacity + h.GrainSize - 1) / h.GrainSize
	g.gdEntries = (g.grains + uint64(h.NumGTEsPerGT) - 1) / uint64(h.NumGTEsPerGT)
	if g.gdEntries*4 > uint64(fileSize) {
		return g, fmt.Errorf("%w: capacity %d sectors needs a %d-entry grain directory, larger than the %d-byte file", ErrCorrupt, h.Capacity, g.gdEntries, fileSize)
	}
	g.gdSectors = (g.gdEntries*4 + SectorSize - 1) / SectorSize
	g.gtSectors = (uint64(h.NumGTEsPerGT)*4 + SectorSize - 1) / SectorSize
	if h.Overhead > uint64(fileSize)/SectorSize {
		return g, fmt.Errorf("%w: file truncated: %d bytes, header says grains start at offset %#x", ErrCorrupt, fileSize, h.Overhead*SectorSize)
	}
	return g, nil
}

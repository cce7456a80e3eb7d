package qcow2

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Magic is the first four bytes of every qcow2 file ("QFI\xfb").
const Magic = 0x514649fb

// Incompatible feature bits (header field incompatible_features).
const (
	IncompatDirty           = 1 << 0
	IncompatCorrupt         = 1 << 1
	IncompatExternalData    = 1 << 2
	IncompatCompressionType = 1 << 3
	IncompatExtendedL2      = 1 << 4
)

// Compression types (header field compression_type).
const (
	CompressionZlib = 0
	CompressionZstd = 1
)

// Header extension types qemu knows about.
const (
	ExtBackingFormat = 0xe2792aca
	ExtFeatureTable  = 0x6803f857
	ExtCrypto        = 0x0537be77
	ExtBitmaps       = 0x23852875
	ExtDataFile      = 0x44415441
)

const (
	v2HeaderLength = 72
	v3HeaderLength = 104
	minClusterBits = 9
	maxClusterBits = 21
	// Same limits as qemu (QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE).
	maxL1Bytes       = 32 << 20
	maxRefTableBytes = 8 << 20
	maxBackingName   = 1023
	// Largest virtual size accepted; keeps all offset arithmetic far from overflow.
	maxVirtualSize = 1 << 56
)

// Header is the qcow2 file header (version 2 or 3) with its header extensions.
// Offsets are bytes in the host file, as in the format.
type Header struct {
	Version               uint32      `json:"version"`
	BackingFileOffset     uint64      `json:"backingFileOffset,omitempty"`
	BackingFileSize       uint32      `json:"backingFileSize,omitempty"`
	ClusterBits           uint32      `json:"clusterBits"`
	Size                  uint64      `json:"size"` // virtual size in bytes
	CryptMethod           uint32      `json:"cryptMethod,omitempty"`
	L1Size                uint32      `json:"l1Size"`
	L1TableOffset         uint64      `json:"l1TableOffset"`
	RefcountTableOffset   uint64      `json:"refcountTableOffset"`
	RefcountTableClusters uint32      `json:"refcountTableClusters"`
	NbSnapshots           uint32      `json:"nbSnapshots,omitempty"`
	SnapshotsOffset       uint64      `json:"snapshotsOffset,omitempty"`
	IncompatibleFeatures  uint64      `json:"incompatibleFeatures,omitempty"`
	CompatibleFeatures    uint64      `json:"compatibleFeatures,omitempty"`
	AutoclearFeatures     uint64      `json:"autoclearFeatures,omitempty"`
	RefcountOrder         uint32      `json:"refcountOrder"`
	HeaderLength          uint32      `json:"headerLength"`
	CompressionType       uint8       `json:"compressionType,omitempty"`
	BackingFile           string      `json:"backingFile,omitempty"`
	Extensions            []Extension `json:"extensions,omitempty"`
}

// Extension is one header extension, in file order. Data excludes the padding
// to a multiple of 8 bytes.
type Extension struct {
	Type uint32 `json:"type"`
	Data []byte `json:"data"`
}

// ClusterSize is 1 << ClusterBits.
func (h *Header) ClusterSize() int64 { return 1 << h.ClusterBits }

// RefcountBits is the width of one refcount entry (1 << RefcountOrder).
func (h *Header) RefcountBits() int { return 1 << h.RefcountOrder }

// extensionsStart is where the header extensions begin in cluster 0.
func (h *Header) extensionsStart() int {
	if h.Version == 2 {
		return v2HeaderLength
	}
	return int(h.HeaderLength)
}

// parseHeader decodes and validates the header in buf (the first bytes of the
// file, up to one cluster). It returns ErrNotQcow2 when the magic is wrong.
func parseHeader(buf []byte) (Header, error) {
	var h Header
	be := binary.BigEndian
	if len(buf) < 4 || be.Uint32(buf) != Magic {
		return h, fmt.Errorf("%w: bad magic", ErrNotQcow2)
	}
	if len(buf) < v2HeaderLength {
		return h, fmt.Errorf("%w: header at 0x0: file is only %d bytes", ErrCorrupt, len(buf))
	}
	h.Version = be.Uint32(buf[4:])
	h.BackingFileOffset = be.Uint64(buf[8:])
	h.BackingFileSize = be.Uint32(buf[16:])
	h.ClusterBits = be.Uint32(buf[20:])
	h.Size = be.Uint64(buf[24:])
	h.CryptMethod = be.Uint32(buf[32:])
	h.L1Size = be.Uint32(buf[36:])
	h.L1TableOffset = be.Uint64(buf[40:])
	h.RefcountTableOffset = be.Uint64(buf[48:])
	h.RefcountTableClusters = be.Uint32(buf[56:])
	h.NbSnapshots = be.Uint32(buf[60:])
	h.SnapshotsOffset = be.Uint64(buf[64:])
	switch h.Version {
	case 2:
		h.RefcountOrder = 4
		h.HeaderLength = v2HeaderLength
	case 3:
		if len(buf) < v3HeaderLength {
			return h, fmt.Errorf("%w: version 3 header at 0x0: file is only %d bytes", ErrCorrupt, len(buf))
		}
		h.IncompatibleFeatures = be.Uint64(buf[72:])
		h.CompatibleFeatures = be.Uint64(buf[80:])
		h.AutoclearFeatures = be.Uint64(buf[88:])
		h.RefcountOrder = be.Uint32(buf[96:])
		h.HeaderLength = be.Uint32(buf[100:])
	default:
		return h, fmt.Errorf("%w: version %d (want 2 or 3)", ErrUnsupported, h.Version)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return h, fmt.Errorf("%w: header at 0x14: cluster_bits %d outside %d..%d", ErrCorrupt, h.ClusterBits, minClusterBits, maxClusterBits)
	}
	cs := uint64(1) << h.ClusterBits
	if h.Version == 3 {
		if h.HeaderLength < v3HeaderLength || uint64(h.HeaderLength) > cs {
			return h, fmt.Errorf("%w: header at 0x64: header_length %d outside %d..%d", ErrCorrupt, h.HeaderLength, v3HeaderLength, cs)
		}
		if h.HeaderLength > v3HeaderLength {
			if len(buf) < int(h.HeaderLength) {
				return h, fmt.Errorf("%w: header_length %d but file is only %d bytes", ErrCorrupt, h.HeaderLength, len(buf))
			}
			h.CompressionType = buf[104]
		}
	}
	if h.RefcountOrder > 6 {
		return h, fmt.Errorf("%w: header at 0x60: refcount_order %d (want 0..6)", ErrCorrupt, h.RefcountOrder)
	}
	if h.CryptMethod != 0 {
		return h, fmt.Errorf("%w: encrypted image (crypt_method %d)", ErrUnsupported, h.CryptMethod)
	}
	if h.Size > maxVirtualSize {
		return h, fmt.Errorf("%w: header at 0x18: virtual size %d is absurd", ErrCorrupt, h.Size)
	}
	if h.L1TableOffset%cs != 0 {
		return h, fmt.Errorf("%w: header at 0x28: L1 table offset 0x%x not aligned to cluster size %d", ErrCorrupt, h.L1TableOffset, cs)
	}
	if uint64(h.L1Size)*8 > maxL1Bytes {
		return h, fmt.Errorf("%w: header at 0x24: L1 size %d entries is absurd", ErrCorrupt, h.L1Size)
	}
	if h.RefcountTableOffset%cs != 0 {
		return h, fmt.Errorf("%w: header at 0x30: refcount table offset 0x%x not aligned to cluster size %d", ErrCorrupt, h.RefcountTableOffset, cs)
	}
	if uint64(h.RefcountTableClusters)*cs > maxRefTableBytes {
		return h, fmt.Errorf("%w: header at 0x38: refcount table of %d clusters is absurd", ErrCorrupt, h.RefcountTableClusters)
	}
	if h.NbSnapshots > 0 && h.SnapshotsOffset%cs != 0 {
		return h, fmt.Errorf("%w: header at 0x40: snapshot table offset 0x%x not aligned", ErrCorrupt, h.SnapshotsOffset)
	}
	if err := parseExtensions(&h, buf); err != nil {
		return h, err
	}
	if err := checkFeatures(&h); err != nil {
		return h, err
	}
	if h.BackingFileOffset != 0 {
		name := ""
		end := h.BackingFileOffset + uint64(h.BackingFileSize)
		if h.BackingFileSize <= maxBackingName && end >= h.BackingFileOffset && end <= uint64(len(buf)) { // end may wrap
			name = string(buf[h.BackingFileOffset:end])
		}
		h.BackingFile = name
		return h, fmt.Errorf("%w: image has a backing file %q", ErrUnsupported, name)
	}
	return h, nil
}

func checkFeatures(h *Header) error {
	f := h.IncompatibleFeatures
	if f&IncompatExternalData != 0 {
		return fmt.Errorf("%w: image uses an external data file", ErrUnsupported)
	}
	if f&IncompatExtendedL2 != 0 {
		return fmt.Errorf("%w: image uses extended L2 entries (subclusters)", ErrUnsupported)
	}
	known := uint64(IncompatDirty | IncompatCorrupt | IncompatCompressionType)
	if rest := f &^ known; rest != 0 {
		return fmt.Errorf("%w: unknown incompatible features 0x%x (%s)", ErrUnsupported, rest, featureNames(h, 0, rest))
	}
	if f&IncompatCompressionType != 0 {
		if h.HeaderLength <= v3HeaderLength {
			return fmt.Errorf("%w: compression type feature set but header has no compression_type field", ErrCorrupt)
		}
		if h.CompressionType != CompressionZlib && h.CompressionType != CompressionZstd {
			return fmt.Errorf("%w: unknown compression type %d", ErrUnsupported, h.CompressionType)
		}
	} else if h.CompressionType != CompressionZlib {
		return fmt.Errorf("%w: compression type %d without the compression type feature bit", ErrCorrupt, h.CompressionType)
	}
	return nil
}

// parseExtensions reads the header extensions that follow the header in
// cluster 0 until the end marker, like qemu does.
func parseExtensions(h *Header, buf []byte) error {
	be := binary.BigEndian
	end := uint64(h.ClusterSize())
	if h.BackingFileOffset != 0 && h.BackingFileOffset < end {
		end = h.BackingFileOffset
	}
	if end > uint64(len(buf)) {
		end = uint64(len(buf))
	}
	off := uint64(h.extensionsStart())
	for off+8 <= end {
		typ := be.Uint32(buf[off:])
		n := uint64(be.Uint32(buf[off+4:]))
		if typ == 0 {
			return nil
		}
		if n > end-off-8 {
			return fmt.Errorf("%w: header extension 0x%x at 0x%x: length %d runs past 0x%x", ErrCorrupt, typ, off, n, end)
		}
		data := append([]byte(nil), buf[off+8:off+8+n]...)
		h.Extensions = append(h.Extensions, Extension{Type: typ, Data: data})
		off += 8 + (n+7)&^7
	}
	return nil
}

// encodeHeader writes h (fields, extensions with end marker) into cluster,
// which must be zeroed and at least as long as the encoded header.
func encodeHeader(h *Header, cluster []byte) error {
	be := binary.BigEndian
	need := headerBytes(h)
	if need > len(cluster) {
		return fmt.Errorf("%w: header and extensions need %d bytes, more than one cluster (%d)", ErrInvalidLayout, need, len(cluster))
	}
	be.PutUint32(cluster[0:], Magic)
	be.PutUint32(cluster[4:], h.Version)
	be.PutUint64(cluster[8:], h.BackingFileOffset)
	be.PutUint32(cluster[16:], h.BackingFileSize)
	be.PutUint32(cluster[20:], h.ClusterBits)
	be.PutUint64(cluster[24:], h.Size)
	be.PutUint32(cluster[32:], h.CryptMethod)
	be.PutUint32(cluster[36:], h.L1Size)
	be.PutUint64(cluster[40:], h.L1TableOffset)
	be.PutUint64(cluster[48:], h.RefcountTableOffset)
	be.PutUint32(cluster[56:], h.RefcountTableClusters)
	be.PutUint32(cluster[60:], h.NbSnapshots)
	be.PutUint64(cluster[64:], h.SnapshotsOffset)
	if h.Version == 3 {
		be.PutUint64(cluster[72:], h.IncompatibleFeatures)
		be.PutUint64(cluster[80:], h.CompatibleFeatures)
		be.PutUint64(cluster[88:], h.AutoclearFeatures)
		be.PutUint32(cluster[96:], h.RefcountOrder)
		be.PutUint32(cluster[100:], h.HeaderLength)
		if h.HeaderLength > v3HeaderLength {
			cluster[104] = h.CompressionType
		}
	}
	off := h.extensionsStart()
	for _, e := range h.Extensions {
		be.PutUint32(cluster[off:], e.Type)
		be.PutUint32(cluster[off+4:], uint32(len(e.Data)))
		copy(cluster[off+8:], e.Data)
		off += 8 + (len(e.Data)+7)&^7
	}
	// The end marker is eight zero bytes, already there.
	return nil
}

// headerBytes is the length of the encoded header with extensions and end marker.
func headerBytes(h *Header) int {
	n := h.extensionsStart()
	for _, e := range h.Extensions {
		n += 8 + (len(e.Data)+7)&^7
	}
	return n + 8
}

// featureNames decodes a feature name table extension, for error messages.
func featureNames(h *Header, kind byte, bits uint64) string {
	var names []string
	for _, e := range h.Extensions {
		if e.Type != ExtFeatureTable {
			continue
		}
		for i := 0; i+48 <= len(e.Data); i += 48 {
			if e.Data[i] == kind && e.Data[i+1] < 64 && bits&(1<<e.Data[i+1]) != 0 {
				names = append(names, strings.TrimRight(string(e.Data[i+2:i+48]), "\x00"))
			}
		}
	}
	return strings.Join(names, ", ")
}

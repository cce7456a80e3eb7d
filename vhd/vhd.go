// Package vhd reads and writes fixed Virtual Hard Disk images (the format
// Azure takes, written by qemu-img convert -O vpc -o subformat=fixed): the
// guest bytes as they are, followed by a 512-byte footer. Like archive/tar it
// works on io.ReaderAt, io.Reader and io.Writer and knows nothing of files.
package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FooterSize is the size of the footer that ends every VHD.
const FooterSize = 512

// Disk types of the footer.
const (
	TypeFixed        = 2
	TypeDynamic      = 3
	TypeDifferencing = 4
)

// cookie starts every footer.
var cookie = []byte(Cookie)

// ErrNotVHD means the data does not end with a VHD footer.
var ErrNotVHD = errors.New("vhd: not a VHD (no conectix footer)")

// ErrUnsupported marks a valid VHD that this package cannot handle (not fixed).
var ErrUnsupported = errors.New("vhd: unsupported")

// ErrCorrupt marks a footer that contradicts itself.
var ErrCorrupt = errors.New("vhd: corrupt footer")

// Footer is the parsed 512-byte footer (big-endian fields).
type Footer struct {
	Features     uint32
	Version      uint32
	DataOffset   uint64 // all ones for a fixed disk
	Timestamp    uint32 // seconds since 2000-01-01 UTC
	CreatorApp   [4]byte
	CreatorVer   uint32
	CreatorOS    uint32
	OriginalSize uint64
	CurrentSize  uint64
	Geometry     uint32 // cylinders<<16 | heads<<8 | sectors per track
	DiskType     uint32
	Checksum     uint32
	UUID         [16]byte
	SavedState   byte
}

// ParseFooter decodes a footer and checks its cookie and checksum.
func ParseFooter(b []byte) (*Footer, error) {
	if len(b) != FooterSize || !bytes.HasPrefix(b, cookie) {
		return nil, ErrNotVHD
	}
	be := binary.BigEndian
	f := &Footer{
		Features: be.Uint32(b[8:]), Version: be.Uint32(b[12:]), DataOffset: be.Uint64(b[16:]),
		Timestamp: be.Uint32(b[24:]), CreatorVer: be.Uint32(b[32:]), CreatorOS: be.Uint32(b[36:]),
		OriginalSize: be.Uint64(b[40:]), CurrentSize: be.Uint64(b[48:]), Geometry: be.Uint32(b[56:]),
		DiskType: be.Uint32(b[60:]), Checksum: be.Uint32(b[64:]), SavedState: b[84],
	}
	copy(f.CreatorApp[:], b[28:32])
	copy(f.UUID[:], b[68:84])
	if sum := Checksum(b); sum != f.Checksum {
		return nil, fmt.Errorf("%w: checksum %#08x, the footer's bytes sum to %#08x", ErrCorrupt, f.Checksum, sum)
	}
	return f, nil
}

// Checksum computes a footer's checksum: the ones' complement of the sum of
// its bytes, the checksum field (bytes 64-67) left out.
func Checksum(b []byte) uint32 {
	var c uint32
	for i, x := range b {
		if i < 64 || i >= 68 {
			c += uint32(x)
		}
	}
	return ^c
}

// Fixed describes a fixed VHD closely enough to write it again byte for
// byte from its guest bytes: how many there are and the footer, verbatim.
type Fixed struct {
	DataSize int64  `json:"dataSize"`
	Footer   []byte `json:"footer"`
}

// Validate checks that f can be written: a 512-byte footer of a fixed disk
// with a good checksum, after a whole number of sectors.
func (f *Fixed) Validate() error {
	h, err := ParseFooter(f.Footer)
	if err != nil {
		return err
	}
	if h.DiskType != TypeFixed {
		return fmt.Errorf("%w: disk type %d, only fixed (2) disks are plain guest bytes", ErrUnsupported, h.DiskType)
	}
	if f.DataSize < 0 || f.DataSize%512 != 0 {
		return fmt.Errorf("%w: %d bytes of data before the footer, not whole sectors", ErrCorrupt, f.DataSize)
	}
	if h.CurrentSize > uint64(f.DataSize) {
		return fmt.Errorf("%w: footer says %d bytes, the image holds %d", ErrCorrupt, h.CurrentSize, f.DataSize)
	}
	return nil
}

// OpenFixed reads the footer at the end of the size-byte image in r and
// describes the fixed disk; its guest bytes are r's first DataSize bytes. A
// dynamic or differencing VHD is reported with ErrUnsupported.
func OpenFixed(r io.ReaderAt, size int64) (*Fixed, error) {
	if size < FooterSize {
		return nil, ErrNotVHD
	}
	b := make([]byte, FooterSize)
	if _, err := r.ReadAt(b, size-FooterSize); err != nil && err != io.EOF {
		return nil, fmt.Errorf("vhd: read footer at offset %#x: %w", size-FooterSize, err)
	}
	f := &Fixed{DataSize: size - FooterSize, Footer: b}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("footer at offset %#x: %w", size-FooterSize, err)
	}
	return f, nil
}

// Guest returns the guest bytes of the fixed disk in r.
func (f *Fixed) Guest(r io.ReaderAt) *io.SectionReader { return io.NewSectionReader(r, 0, f.DataSize) }

// Size is the size of the image file.
func (f *Fixed) Size() int64 { return f.DataSize + FooterSize }

// WriteFixed writes the image f describes: exactly DataSize bytes of guest
// (which must end there) and the footer.
func WriteFixed(w io.Writer, guest io.Reader, f *Fixed) error {
	if err := f.Validate(); err != nil {
		return err
	}
	n, err := io.Copy(w, io.LimitReader(guest, f.DataSize))
	if err != nil {
		return fmt.Errorf("vhd: guest: %w", err)
	}
	if n != f.DataSize {
		return fmt.Errorf("vhd: guest ends at offset %#x, the image holds %#x bytes: %w", n, f.DataSize, io.ErrUnexpectedEOF)
	}
	var one [1]byte
	if m, _ := io.ReadFull(guest, one[:]); m > 0 {
		return fmt.Errorf("vhd: guest is longer than the image's %d bytes", f.DataSize)
	}
	_, err = w.Write(f.Footer)
	return err
}

// Package vhdx reads dynamic VHDX images (Hyper-V's disk format, as
// qemu-img convert -O vhdx writes it by default: subformat=dynamic) as their
// guest view, and writes such an image again, byte for byte, from the guest
// view and a Layout read from the original.
//
// A VHDX file is a 1 MiB header section (the "vhdxfile" identifier, two
// 4 KiB headers, two 64 KiB region tables), a log, a metadata region (block
// size, virtual size, sector sizes, disk id) and a block allocation table
// (BAT) in regions anywhere in the file, and payload blocks (1-256 MiB; qemu
// 7.2 picks 8 MiB up to 1 GiB of virtual size, 16 MiB above) that hold the
// guest bytes of the blocks that were written. qemu marks a block whose guest
// bytes are all zero ZERO in the BAT (block_state_zero=on, its default) and
// allocates no payload for it.
//
// Layout keeps every non-zero byte of the file outside the payload blocks
// verbatim (headers, region tables, the log with its random GUIDs, metadata,
// BAT: a few KiB to 1 MiB, mostly zeros and repeated BAT sectors, which a
// recipe compresses well) and re-parses them to find where each payload block
// goes. The payload blocks are the guest's blocks, so the guest view and the
// Layout give back the file. Nothing of qemu's write path (the order of its
// log entries, its random GUIDs and header sequence numbers) has to be
// modelled.
//
// Like archive/tar, the package works on io.ReaderAt, io.Reader and io.Writer
// and knows nothing of files. Only a clean image is read: a header naming a
// log GUID means the log must be replayed first (qemu-img check -r all, or
// opening it once read-write), which this package does not do; differencing
// disks (a parent) are refused.
package vhdx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Sizes and offsets of the header section.
const (
	headerSectionSize = 1 << 20
	header1Off        = 64 << 10
	header2Off        = 128 << 10
	headerSize        = 4 << 10
	regionTable1Off   = 192 << 10
	regionTable2Off   = 256 << 10
	regionTableSize   = 64 << 10
	mib               = 1 << 20
)

// Payload block states (BAT entry bits 0-2).
const (
	BlockNotPresent       = 0
	BlockUndefined        = 1
	BlockZero             = 2
	BlockUnmapped         = 3
	BlockUnmappedV095     = 5 // qemu reads this pre-1.0 value as unmapped too
	BlockFullyPresent     = 6
	BlockPartiallyPresent = 7
)

// ErrNotVHDX means the data does not start with the VHDX file identifier.
var ErrNotVHDX = errors.New("vhdx: not a VHDX (no vhdxfile identifier)")

// ErrCorrupt marks a structure that is damaged or contradicts another.
var ErrCorrupt = errors.New("vhdx: corrupt")

// ErrUnsupported marks a valid VHDX this package does not handle (a log to
// replay, a parent disk, partially present blocks).
var ErrUnsupported = errors.New("vhdx: unsupported")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is the CRC-32C of b with its 4-byte checksum field at off taken as zero.
func checksum(b []byte, off int) uint32 {
	c := crc32.Update(0, castagnoli, b[:off])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	return crc32.Update(c, castagnoli, b[off+4:])
}

// GUID is a GUID as stored on disk (the first three fields little-endian).
type GUID [16]byte

func (g GUID) String() string {
	le := binary.LittleEndian
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", le.Uint32(g[0:]), le.Uint16(g[4:]), le.Uint16(g[6:]), g[8:10], g[10:])
}

func (g GUID) isZero() bool { return g == GUID{} }

// guid builds the on-disk bytes of a GUID from its text fields.
func guid(a uint32, b, c uint16, d uint64) GUID {
	var g GUID
	binary.LittleEndian.PutUint32(g[0:], a)
	binary.LittleEndian.PutUint16(g[4:], b)
	binary.LittleEndian.PutUint16(g[6:], c)
	binary.BigEndian.PutUint64(g[8:], d)
	return g
}

// Well-known GUIDs of the specification (MS-VHDX 2.2.3, 2.6.2).
var (
	regionBAT              = guid(0x2DC27766, 0xF623, 0x4200, 0x9D64115E9BFD4A08)
	regionMetadata         = guid(0x8B7CA206, 0x4790, 0x4B9A, 0xB8FE575F050F886E)
	metaFileParameters     = guid(0xCAA16737, 0xFA36, 0x4D43, 0xB3B633F0AA44E76B)
	metaVirtualDiskSize    = guid(0x2FA54224, 0xCD1B, 0x4876, 0xB2115DBED83BF4B8)
	metaVirtualDiskID      = guid(0xBECA12AB, 0xB2E6, 0x4523, 0x93EFC309E000C746)
	metaLogicalSectorSize  = guid(0x8141BF1D, 0xA96F, 0x4709, 0xBA47F233A8FAAB5F)
	metaPhysicalSectorSize = guid(0xCDA348C7, 0x445D, 0x4471, 0x9CC9E9885251C556)
	metaParentLocator      = guid(0xA8D35F2D, 0xB30B, 0x454D, 0xABF7D3D84834AB0C)
)

// Header is one of the two 4 KiB headers; the one with the higher sequence
// number is current.
type Header struct {
	Offset        int64 // where it was read
	Sequence      uint64
	FileWriteGUID GUID
	DataWriteGUID GUID
	LogGUID       GUID // zero when the log holds nothing to replay
	LogVersion    uint16
	Version       uint16
	LogLength     uint32
	LogOffset     uint64
}

func parseHeader(b []byte, off int64) (*Header, error) {
	if string(b[:4]) != "head" {
		return nil, fmt.Errorf("%w: header at offset %#x: signature %q, want \"head\"", ErrCorrupt, off, b[:4])
	}
	le := binary.LittleEndian
	if c, want := checksum(b, 4), le.Uint32(b[4:]); c != want {
		return nil, fmt.Errorf("%w: header at offset %#x: checksum %#08x, its bytes give %#08x", ErrCorrupt, off, want, c)
	}
	h := &Header{Offset: off, Sequence: le.Uint64(b[8:]), LogVersion: le.Uint16(b[64:]), Version: le.Uint16(b[66:]),
		LogLength: le.Uint32(b[68:]), LogOffset: le.Uint64(b[72:])}
	copy(h.FileWriteGUID[:], b[16:])
	copy(h.DataWriteGUID[:], b[32:])
	copy(h.LogGUID[:], b[48:])
	return h, nil
}

// Region is one entry of the region table.
type Region struct {
	GUID     GUID
	Offset   int64
	Length   int64
	Required bool
}

func parseRegionTable(b []byte, off int64) ([]Region, error) {
	if string(b[:4]) != "regi" {
		return nil, fmt.Errorf("%w: region table at offset %#x: signature %q, want \"regi\"", ErrCorrupt, off, b[:4])
	}
	le := binary.LittleEndian
	if c, want := checksum(b, 4), le.Uint32(b[4:]); c != want {
		return nil, fmt.Errorf("%w: region table at offset %#x: checksum %#08x, its bytes give %#08x", ErrCorrupt, off, want, c)
	}
	n := le.Uint32(b[8:])
	if n > 2047 {
		return nil, fmt.Errorf("%w: region table at offset %#x: %d entries, at most 2047 fit", ErrCorrupt, off, n)
	}
	rs := make([]Region, n)
	for i := range rs {
		e := b[16+32*i:]
		copy(rs[i].GUID[:], e)
		rs[i].Offset = int64(le.Uint64(e[16:]))
		rs[i].Length = int64(le.Uint32(e[24:]))
		rs[i].Required = le.Uint32(e[28:])&1 != 0
	}
	return rs, nil
}

// Block is one allocated payload block.
type Block struct {
	Index   int64 // guest block number
	State   int   // BlockFullyPresent, BlockZero, ...
	FileOff int64 // where its bytes are (0 unless fully present)
}

// Image is an opened VHDX: its parsed structures and its guest view.
type Image struct {
	r                 io.ReaderAt
	fileSize          int64
	Header            *Header // the current header
	Headers           [2]*Header
	Regions           []Region
	BlockSize         int64
	LeaveAllocated    bool
	VirtualSize       int64
	LogicalSector     int64
	PhysicalSector    int64
	DiskID            GUID
	ChunkRatio        int64
	Blocks            []Block // every BAT payload entry not NOT_PRESENT, in guest order
	bat               []uint64
	batOff, metaOff   int64
	batLen, metaLen   int64
	blockCount        int64
	fileIdentifierLen int
}

// FileSize is the size of the image file.
func (img *Image) FileSize() int64 { return img.fileSize }

// readAt reads exactly len(b) bytes at off, naming what it reads in errors.
func readAt(r io.ReaderAt, b []byte, off, size int64, what string) error {
	if off < 0 || off+int64(len(b)) > size {
		return fmt.Errorf("%w: %s at offset %#x (%d bytes) is past the end of the %d-byte file", ErrCorrupt, what, off, len(b), size)
	}
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("vhdx: read %s at offset %#x: %w", what, off, err)
}

// Open parses the size-byte VHDX in r.
func Open(r io.ReaderAt, size int64) (*Image, error) {
	img := &Image{r: r, fileSize: size}
	if !Sniff(r, size) {
		return nil, ErrNotVHDX
	}
	if size < headerSectionSize {
		// It has the identifier: a VHDX cut short, not some other file.
		return nil, fmt.Errorf("%w: the file has %d bytes, fewer than the %d of the header section (truncated)", ErrCorrupt, size, headerSectionSize)
	}
	b := make([]byte, regionTableSize)
	var errs [2]error
	for i, off := range []int64{header1Off, header2Off} {
		if err := readAt(r, b[:headerSize], off, size, "header"); err != nil {
			return nil, err
		}
		img.Headers[i], errs[i] = parseHeader(b[:headerSize], off)
	}
	switch {
	case img.Headers[0] == nil && img.Headers[1] == nil:
		return nil, fmt.Errorf("no valid header: %w; %w", errs[0], errs[1])
	case img.Headers[1] == nil || img.Headers[0] != nil && img.Headers[0].Sequence > img.Headers[1].Sequence:
		img.Header = img.Headers[0]
	default:
		img.Header = img.Headers[1]
	}
	h := img.Header
	if h.Version != 1 {
		return nil, fmt.Errorf("%w: header at offset %#x: version %d, only version 1 is defined", ErrUnsupported, h.Offset, h.Version)
	}
	if !h.LogGUID.isZero() {
		return nil, fmt.Errorf("%w: header at offset %#x names log %v: the log must be replayed first (qemu-img check -r all)", ErrUnsupported, h.Offset, h.LogGUID)
	}
	var rerr error
	for _, off := range []int64{regionTable1Off, regionTable2Off} {
		if err := readAt(r, b, off, size, "region table"); err != nil {
			return nil, err
		}
		if img.Regions, rerr = parseRegionTable(b, off); rerr == nil {
			break
		}
	}
	if rerr != nil {
		return nil, rerr
	}
	for _, rg := range img.Regions {
		switch rg.GUID {
		case regionBAT:
			img.batOff, img.batLen = rg.Offset, rg.Length
		case regionMetadata:
			img.metaOff, img.metaLen = rg.Offset, rg.Length
		default:
			if rg.Required {
				return nil, fmt.Errorf("%w: region table names required region %v unknown to this package", ErrUnsupported, rg.GUID)
			}
		}
		if rg.Offset < headerSectionSize || rg.Offset%mib != 0 || rg.Length%mib != 0 || rg.Offset+rg.Length > size || rg.Length < 0 {
			return nil, fmt.Errorf("%w: region %v at offset %#x (%d bytes) is not whole MiB inside the %d-byte file", ErrCorrupt, rg.GUID, rg.Offset, rg.Length, size)
		}
	}
	if img.batLen == 0 || img.metaLen == 0 {
		return nil, fmt.Errorf("%w: region table lacks the BAT or the metadata region", ErrCorrupt)
	}
	if err := img.readMetadata(); err != nil {
		return nil, err
	}
	if err := img.readBAT(); err != nil {
		return nil, err
	}
	return img, nil
}

// readMetadata reads the metadata table and the items the guest view needs.
func (img *Image) readMetadata() error {
	if img.metaLen > 64*mib {
		return fmt.Errorf("%w: metadata region at offset %#x is %d bytes, more than 64 MiB", ErrCorrupt, img.metaOff, img.metaLen)
	}
	tab := make([]byte, 64<<10)
	if err := readAt(img.r, tab, img.metaOff, img.fileSize, "metadata table"); err != nil {
		return err
	}
	if string(tab[:8]) != "metadata" {
		return fmt.Errorf("%w: metadata table at offset %#x: signature %q, want \"metadata\"", ErrCorrupt, img.metaOff, tab[:8])
	}
	le := binary.LittleEndian
	n := int(le.Uint16(tab[10:]))
	if n > 2047 {
		return fmt.Errorf("%w: metadata table at offset %#x: %d entries, at most 2047 fit", ErrCorrupt, img.metaOff, n)
	}
	item := func(e []byte, want int) ([]byte, error) {
		off, length := int64(le.Uint32(e[16:])), int64(le.Uint32(e[20:]))
		if int(length) != want || off < 64<<10 || off+length > img.metaLen {
			return nil, fmt.Errorf("%w: metadata item %v at region offset %#x: %d bytes (want %d) outside the %d-byte region", ErrCorrupt, GUID(e[:16]), off, length, want, img.metaLen)
		}
		b := make([]byte, length)
		return b, readAt(img.r, b, img.metaOff+off, img.fileSize, "metadata item")
	}
	var seen int
	for i := range n {
		e := tab[32+32*i : 64+32*i]
		var b []byte
		var err error
		switch GUID(e[:16]) {
		case metaFileParameters:
			if b, err = item(e, 8); err == nil {
				img.BlockSize = int64(le.Uint32(b))
				img.LeaveAllocated = b[4]&1 != 0
				if b[4]&2 != 0 {
					return fmt.Errorf("%w: a differencing disk (file parameters at metadata offset %#x say it has a parent)", ErrUnsupported, img.metaOff)
				}
				seen |= 1
			}
		case metaVirtualDiskSize:
			if b, err = item(e, 8); err == nil {
				img.VirtualSize = int64(le.Uint64(b))
				seen |= 2
			}
		case metaLogicalSectorSize:
			if b, err = item(e, 4); err == nil {
				img.LogicalSector = int64(le.Uint32(b))
				seen |= 4
			}
		case metaPhysicalSectorSize:
			if b, err = item(e, 4); err == nil {
				img.PhysicalSector = int64(le.Uint32(b))
			}
		case metaVirtualDiskID:
			if b, err = item(e, 16); err == nil {
				copy(img.DiskID[:], b)
			}
		case metaParentLocator:
			return fmt.Errorf("%w: a differencing disk (metadata at offset %#x has a parent locator)", ErrUnsupported, img.metaOff)
		default:
			if le.Uint32(e[24:])&4 != 0 {
				return fmt.Errorf("%w: metadata table at offset %#x requires item %v unknown to this package", ErrUnsupported, img.metaOff, GUID(e[:16]))
			}
		}
		if err != nil {
			return err
		}
	}
	if seen != 7 {
		return fmt.Errorf("%w: metadata table at offset %#x lacks file parameters, virtual disk size or logical sector size", ErrCorrupt, img.metaOff)
	}
	bs := img.BlockSize
	if bs < mib || bs > 256*mib || bs&(bs-1) != 0 {
		return fmt.Errorf("%w: block size %d is not a power of two from 1 to 256 MiB", ErrCorrupt, bs)
	}
	if img.LogicalSector != 512 && img.LogicalSector != 4096 {
		return fmt.Errorf("%w: logical sector size %d, want 512 or 4096", ErrCorrupt, img.LogicalSector)
	}
	if img.VirtualSize <= 0 || img.VirtualSize > 64<<40 || img.VirtualSize%img.LogicalSector != 0 {
		return fmt.Errorf("%w: virtual size %d is not whole sectors up to 64 TiB", ErrCorrupt, img.VirtualSize)
	}
	img.ChunkRatio = (1 << 23) * img.LogicalSector / bs
	img.blockCount = (img.VirtualSize + bs - 1) / bs
	return nil
}

// maxBATBytes bounds the BAT held in memory: 8 Mi blocks, 8 TiB of 1 MiB
// blocks, 128 TiB of qemu's 16 MiB ones.
const maxBATBytes = 64 << 20

// readBAT reads the BAT entries of the payload blocks (sector bitmap entries,
// which a dynamic disk leaves zero, are interleaved every ChunkRatio blocks).
func (img *Image) readBAT() error {
	entries := img.blockCount + (img.blockCount-1)/img.ChunkRatio
	if entries*8 > maxBATBytes {
		return fmt.Errorf("%w: %d blocks of %d bytes need a %d-byte BAT, more than this package holds (%d)", ErrUnsupported, img.blockCount, img.BlockSize, entries*8, maxBATBytes)
	}
	if entries*8 > img.batLen {
		return fmt.Errorf("%w: BAT region at offset %#x holds %d bytes, %d blocks need %d", ErrCorrupt, img.batOff, img.batLen, img.blockCount, entries*8)
	}
	raw := make([]byte, entries*8)
	if err := readAt(img.r, raw, img.batOff, img.fileSize, "BAT"); err != nil {
		return err
	}
	img.bat = make([]uint64, img.blockCount)
	for i := range img.blockCount {
		pos := i + i/img.ChunkRatio
		e := binary.LittleEndian.Uint64(raw[8*pos:])
		img.bat[i] = e
		st := int(e & 7)
		off := int64(e >> 20 << 20)
		switch st {
		case BlockNotPresent:
			continue
		case BlockUndefined, BlockZero, BlockUnmapped, BlockUnmappedV095:
			off = 0
		case BlockFullyPresent:
			if off < headerSectionSize || off >= img.fileSize {
				return fmt.Errorf("%w: BAT entry %d at offset %#x: block %d at file offset %#x is outside the %d-byte file", ErrCorrupt, pos, img.batOff+8*pos, i, off, img.fileSize)
			}
		case BlockPartiallyPresent:
			return fmt.Errorf("%w: BAT entry %d at offset %#x: block %d is partially present (a differencing disk)", ErrUnsupported, pos, img.batOff+8*pos, i)
		default:
			return fmt.Errorf("%w: BAT entry %d at offset %#x: block state %d is undefined", ErrCorrupt, pos, img.batOff+8*pos, st)
		}
		img.Blocks = append(img.Blocks, Block{Index: i, State: st, FileOff: off})
	}
	return nil
}

// guestLen is how many guest bytes block i holds (the last one may be short).
func (img *Image) guestLen(i int64) int64 {
	return min(img.BlockSize, img.VirtualSize-i*img.BlockSize)
}

// ReadAt reads the guest view; blocks that are not fully present read as
// zeros, as do bytes of a present block past the end of the file.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vhdx: negative guest offset %d", off)
	}
	if off >= img.VirtualSize {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > img.VirtualSize-off {
		p, eof = p[:img.VirtualSize-off], io.EOF
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		i, in := pos/img.BlockSize, pos%img.BlockSize
		n := min(int64(len(p)-done), img.BlockSize-in)
		q := p[done : done+int(n)]
		e := img.bat[i]
		if e&7 != BlockFullyPresent {
			clear(q)
		} else {
			host := int64(e>>20<<20) + in
			m := max(0, min(n, img.fileSize-host))
			if m > 0 {
				if err := readAt(img.r, q[:m], host, img.fileSize, fmt.Sprintf("block %d (guest offset %#x)", i, pos)); err != nil {
					return done, err
				}
			}
			clear(q[m:])
		}
		done += int(n)
	}
	return done, eof
}

// Guest returns the guest view as a SectionReader of VirtualSize bytes.
func (img *Image) Guest() *io.SectionReader { return io.NewSectionReader(img, 0, img.VirtualSize) }

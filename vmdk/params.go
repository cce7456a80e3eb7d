package vmdk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// LayoutQemu names the layout qemu-img writes for streamOptimized: header,
// descriptor, redundant grain directory and its tables, grain directory and
// its tables, zeros up to Overhead, then one marker-prefixed grain per
// non-zero guest grain in guest order, each starting on a sector boundary,
// and nothing after the last grain (no grain table markers, footer or
// end-of-stream marker).
const LayoutQemu = "qemu-streamOptimized"

// DeflateQemu names the deflate qemu uses for grains: zlib's compress(),
// that is compress2 at Z_DEFAULT_COMPRESSION (level 6, 32 KiB window,
// memLevel 8, default strategy). Verify reports it with zlib's version, for
// example "zlib-1.2.13 level 6"; Encode accepts both spellings.
const DeflateQemu = "zlib level 6"

// Params is everything Encode needs to write an image again, given its guest
// view. All of it comes from the image itself (Image.Params).
type Params struct {
	// Header is the header in sector 0, field for field.
	Header Header `json:"header"`
	// Descriptor is the embedded descriptor text verbatim (it holds the random
	// CID, adapter type and hardware version), without its NUL padding.
	Descriptor []byte `json:"descriptor"`
	// Deflate names the compressor of the grains (see DeflateQemu).
	Deflate string `json:"deflate,omitempty"`
	// Layout is LayoutQemu when Encode can reproduce the image; otherwise it
	// is empty and LayoutNote says why.
	Layout     string `json:"layout,omitempty"`
	LayoutNote string `json:"layoutNote,omitempty"`
	// Grains lists the allocated grains and the size of each one's
	// compressed stream (see GrainMap). File offsets follow from it.
	Grains GrainMap `json:"grains"`
	// FileSize is the size of the image file in bytes.
	FileSize int64 `json:"fileSize"`
}

// GrainMap is a compact list of allocated grains in guest order: for each,
// the uvarint count of unallocated grains skipped since the previous one,
// then the uvarint length of its compressed stream. A streamOptimized image
// of qemu's layout stores grain after grain, so this also gives every grain
// table entry: about 3 bytes per allocated grain instead of 4 per grain.
type GrainMap []byte

// Grain is one allocated grain of a GrainMap.
type Grain struct {
	Index uint64 // grain number: the grain's first LBA is Index*GrainSize
	Size  uint32 // bytes of compressed stream (the marker's size field)
}

// Append adds a grain, which must come after the last one appended (last is
// its index, -1 for none).
func (m GrainMap) Append(last int64, g Grain) GrainMap {
	m = binary.AppendUvarint(m, uint64(int64(g.Index)-last-1))
	return binary.AppendUvarint(m, uint64(g.Size))
}

// All calls fn for each grain in order, stopping at the first error.
func (m GrainMap) All(fn func(Grain) error) error {
	next := uint64(0)
	for b := []byte(m); len(b) > 0; {
		skip, n := binary.Uvarint(b)
		if n <= 0 {
			return fmt.Errorf("%w: grain map: bad varint after grain %d", ErrInvalidParams, next)
		}
		b = b[n:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > 1<<32-1 {
			return fmt.Errorf("%w: grain map: bad size after grain %d", ErrInvalidParams, next)
		}
		b = b[n:]
		if skip > 1<<62 {
			return fmt.Errorf("%w: grain map: skip of %d grains", ErrInvalidParams, skip)
		}
		g := Grain{Index: next + skip, Size: uint32(size)}
		next = g.Index + 1
		if err := fn(g); err != nil {
			return err
		}
	}
	return nil
}

// slotSectors is the number of sectors a grain with a size-byte compressed
// stream takes, marker and padding included.
func slotSectors(size uint32) uint64 {
	return (uint64(size) + grainMark + SectorSize - 1) / SectorSize
}

var deflateRE = regexp.MustCompile(`^zlib(-[0-9][0-9A-Za-z.\-]*)? level ([1-9])$`)

// deflateLevel parses Deflate ("zlib level 6" or "zlib-1.2.13 level 6").
func (p *Params) deflateLevel() (int, error) {
	m := deflateRE.FindStringSubmatch(p.Deflate)
	if m == nil {
		return 0, fmt.Errorf("%w: deflate %q (want %q)", ErrUnsupported, p.Deflate, DeflateQemu)
	}
	return strconv.Atoi(m[2])
}

// check validates p for Encode and returns the geometry it implies.
func (p *Params) check() (geometry, error) {
	var g geometry
	if p.Layout != LayoutQemu {
		note := p.LayoutNote
		if note == "" {
			note = fmt.Sprintf("layout %q", p.Layout)
		}
		return g, fmt.Errorf("%w: cannot encode this image: %s", ErrUnsupported, note)
	}
	h := &p.Header
	g, err := h.check(p.FileSize)
	if err != nil {
		return g, fmt.Errorf("%w: %w", ErrInvalidParams, err)
	}
	if h.CompressAlgorithm != CompressDeflate || h.Flags&FlagMarkers == 0 || h.GDOffset == GDAtEnd {
		return g, fmt.Errorf("%w: header is not streamOptimized with markers and a grain directory offset", ErrInvalidParams)
	}
	if int64(len(p.Descriptor)) > int64(h.DescriptorSize)*SectorSize || (len(p.Descriptor) > 0 && h.DescriptorOffset == 0) {
		return g, fmt.Errorf("%w: %d-byte descriptor does not fit %d sectors", ErrInvalidParams, len(p.Descriptor), h.DescriptorSize)
	}
	if err := overlaps(p.regions(g), h.Overhead); err != nil {
		return g, fmt.Errorf("%w: %w", ErrInvalidParams, err)
	}
	end := h.Overhead
	err = p.Grains.All(func(gr Grain) error {
		if gr.Index >= g.grains {
			return fmt.Errorf("%w: grain %d beyond the %d grains of the guest", ErrInvalidParams, gr.Index, g.grains)
		}
		if gr.Size == 0 || int64(gr.Size) > 2*g.grainBytes {
			return fmt.Errorf("%w: grain %d has %d compressed bytes", ErrInvalidParams, gr.Index, gr.Size)
		}
		end += slotSectors(gr.Size)
		if end > 1<<32 {
			return fmt.Errorf("%w: grain %d ends beyond sector 2^32", ErrInvalidParams, gr.Index)
		}
		return nil
	})
	if err != nil {
		return g, err
	}
	if tail := p.FileSize - int64(end)*SectorSize; tail < 0 || tail > g.grainBytes {
		return g, fmt.Errorf("%w: grains end at offset %#x, file size is %#x", ErrInvalidParams, end*SectorSize, p.FileSize)
	}
	return g, nil
}

// region is a piece of metadata at a sector.
type region struct {
	name    string
	start   uint64 // sector
	sectors uint64
	dir     bool // a grain directory followed by its tables
}

// regions lists the metadata Encode writes, sorted by position.
func (p *Params) regions(g geometry) []region {
	h := &p.Header
	rs := []region{{name: "header", start: 0, sectors: 1}}
	if h.DescriptorOffset != 0 && h.DescriptorSize != 0 {
		rs = append(rs, region{name: "descriptor", start: h.DescriptorOffset, sectors: h.DescriptorSize})
	}
	dirLen := g.gdSectors + g.gdEntries*g.gtSectors
	if h.Flags&FlagRGD != 0 {
		rs = append(rs, region{name: "redundant grain directory", start: h.RGDOffset, sectors: dirLen, dir: true})
	}
	rs = append(rs, region{name: "grain directory", start: h.GDOffset, sectors: dirLen, dir: true})
	slices.SortStableFunc(rs, func(a, b region) int {
		if a.start < b.start {
			return -1
		}
		if a.start > b.start {
			return 1
		}
		return 0
	})
	return rs
}

// overlaps checks that regions are disjoint and end by sector limit.
func overlaps(rs []region, limit uint64) error {
	end := uint64(0)
	for _, r := range rs {
		if r.start < end {
			return fmt.Errorf("%s at sector %#x overlaps the metadata before it", r.name, r.start)
		}
		if r.sectors > limit || r.start > limit-r.sectors {
			return fmt.Errorf("%s at sector %#x (%d sectors) runs past the grains at sector %#x", r.name, r.start, r.sectors, limit)
		}
		end = r.start + r.sectors
	}
	return nil
}

// Params describes the image for Encode. For an image of LayoutQemu it reads
// every grain table and the marker of every allocated grain once (bounded by
// the file size, since such grains cannot overlap); the result is kept. When
// the image is not of LayoutQemu, Params stops at the first sign and
// succeeds with Layout empty and LayoutNote saying why. It fails on
// corruption it meets (a grain table or marker that contradicts the image).
func (img *Image) Params() (*Params, error) {
	img.paramsMu.Lock()
	defer img.paramsMu.Unlock()
	if img.params == nil && img.paramsE == nil {
		img.params, img.paramsE = img.computeParams()
	}
	if img.paramsE != nil {
		return nil, img.paramsE
	}
	p := *img.params
	p.Descriptor = bytes.Clone(p.Descriptor)
	p.Grains = bytes.Clone(p.Grains)
	return &p, nil
}

func (img *Image) computeParams() (*Params, error) {
	h := &img.eff
	p := &Params{Header: img.hdr, Descriptor: bytes.Clone(img.desc), FileSize: img.fileSize}
	if img.compressed {
		p.Deflate = DeflateQemu
	}
	note := img.layoutNote()
	var rgd []uint32
	if note == "" && h.Flags&FlagRGD != 0 {
		var err error
		if rgd, err = img.readDir(h.RGDOffset, "redundant grain directory"); err != nil {
			note = err.Error()
		} else if note = dirNote(rgd, h.RGDOffset, img.geo, "redundant grain directory"); note != "" {
			rgd = nil
		}
	}
	next := h.Overhead // where the next grain goes in qemu's layout
	last := int64(-1)
	var m GrainMap
	var marker [grainMark]byte
	n := uint64(h.NumGTEsPerGT)
walk:
	for t, s := range img.gd {
		if note != "" {
			break
		}
		gt, err := img.readGT(s, uint64(t))
		if err != nil {
			return nil, err
		}
		if rgd != nil {
			rgt, err := img.readGT(rgd[t], uint64(t))
			if err != nil {
				note = "redundant " + err.Error()
			} else if !slices.Equal(gt, rgt) {
				note = fmt.Sprintf("grain table %d differs from its redundant copy", t)
			}
		}
		for i, e := range gt {
			gi := uint64(t)*n + uint64(i)
			if e == 0 || note != "" {
				continue
			}
			lba := gi * h.GrainSize
			off := int64(e) * SectorSize
			switch {
			case gi >= img.geo.grains:
				note = fmt.Sprintf("grain table %d has an entry beyond the guest", t)
				break walk
			case img.zeroGrain && e == gteZeroed:
				note = fmt.Sprintf("zeroed grain at LBA %#x", lba)
				break walk
			case uint64(e) != next:
				note = fmt.Sprintf("grain for LBA %#x at sector %#x, qemu would put it at %#x", lba, e, next)
				break walk
			case off >= img.fileSize:
				return nil, &GrainError{LBA: lba, Offset: off, Err: fmt.Errorf("offset past the end of the %d-byte file", img.fileSize)}
			}
			if err := readAt(img.r, marker[:], off); err != nil {
				return nil, &GrainError{LBA: lba, Offset: off, Err: fmt.Errorf("read grain marker: %w", err)}
			}
			if got := binary.LittleEndian.Uint64(marker[:]); got != lba {
				return nil, &GrainError{LBA: lba, Offset: off, Err: fmt.Errorf("grain marker says LBA %#x", got)}
			}
			size := binary.LittleEndian.Uint32(marker[8:])
			if size == 0 || int64(size) > 2*img.geo.grainBytes || int64(size) > img.fileSize-off-grainMark {
				return nil, &GrainError{LBA: lba, Offset: off, Err: fmt.Errorf("grain marker says %d compressed bytes", size)}
			}
			next = uint64(e) + slotSectors(size)
			m = m.Append(last, Grain{Index: gi, Size: size})
			last = int64(gi)
		}
	}
	// qemu zero-fills a whole grain where it allocates one before writing the
	// compressed grain there, so the file ends a grain after the start of the
	// last one, or later if that grain compressed badly.
	if tail := img.fileSize - int64(next)*SectorSize; note == "" && (tail < 0 || tail > img.geo.grainBytes) {
		note = fmt.Sprintf("file is %d bytes, grains end at %d", img.fileSize, int64(next)*SectorSize)
	}
	if note == "" {
		p.Layout = LayoutQemu
		p.Grains = m
	} else {
		p.LayoutNote = note
	}
	return p, nil
}

// layoutNote says why the image cannot be of LayoutQemu, judging from the
// header and grain directory alone ("" if it may be).
func (img *Image) layoutNote() string {
	h := &img.eff
	switch {
	case !img.compressed || !img.markers:
		return "not streamOptimized (grains uncompressed or without markers)"
	case img.footer:
		return "grain directory at the end, with a footer (VMware's stream layout)"
	}
	sec := make([]byte, SectorSize)
	if err := readAt(img.r, sec, 0); err != nil || !allZero(sec[headerLen:]) {
		return "header sector holds data after the header"
	}
	p := &Params{Header: img.hdr}
	if err := overlaps(p.regions(img.geo), h.Overhead); err != nil {
		return err.Error()
	}
	return dirNote(img.gd, h.GDOffset, img.geo, "grain directory")
}

// dirNote checks that a grain directory at sector start points at tables
// that follow it back to back, as qemu lays them out.
func dirNote(dir []uint32, start uint64, g geometry, name string) string {
	for i, s := range dir {
		if want := start + g.gdSectors + uint64(i)*g.gtSectors; uint64(s) != want {
			return fmt.Sprintf("%s entry %d is sector %#x, qemu would use %#x", name, i, s, want)
		}
	}
	return ""
}

func (img *Image) readDir(s uint64, name string) ([]uint32, error) {
	n := int64(img.geo.gdEntries) * 4
	off, ok := sectorOffset(s, img.fileSize, n)
	if !ok {
		return nil, fmt.Errorf("%w: %s at sector %#x lies outside the %d-byte file", ErrCorrupt, name, s, img.fileSize)
	}
	b := make([]byte, n)
	if err := readAt(img.r, b, off); err != nil {
		return nil, fmt.Errorf("vmdk: read %s at offset %#x: %w", name, off, err)
	}
	d := make([]uint32, img.geo.gdEntries)
	for i := range d {
		d[i] = binary.LittleEndian.Uint32(b[i*4:])
	}
	return d, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

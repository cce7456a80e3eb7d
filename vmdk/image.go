package vmdk

import (
	"bytes"
	"compress/zlib"
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// GrainError is a grain that cannot be read: its data is not a valid
// compressed stream, its marker contradicts the grain table, or it lies
// outside the file. It unwraps to ErrCorrupt and to the underlying error.
type GrainError struct {
	LBA    uint64 // first guest sector of the grain
	Offset int64  // file offset the grain table points to
	Err    error
}

func (e *GrainError) Error() string {
	return fmt.Sprintf("vmdk: grain for LBA %#x at offset %#x: %v", e.LBA, e.Offset, e.Err)
}

// Unwrap lets errors.Is find both ErrCorrupt and the cause.
func (e *GrainError) Unwrap() []error { return []error{ErrCorrupt, e.Err} }

// Image is an open sparse VMDK extent. It is an io.ReaderAt over the guest
// view; its methods are safe for concurrent use.
type Image struct {
	r        io.ReaderAt
	fileSize int64
	hdr      Header // sector 0, as stored
	eff      Header // the header in force (the footer's if GDOffset is GDAtEnd)
	footer   bool
	geo      geometry
	desc     []byte
	gd       []uint32

	compressed bool
	markers    bool
	zeroGrain  bool

	mu       sync.Mutex
	gts      map[uint64]*list.Element // grain table index -> element holding *gtEntry
	gtLRU    list.List
	grains   map[uint64]*list.Element // grain index -> element holding *grainEntry
	grLRU    list.List
	paramsMu sync.Mutex
	params   *Params
	paramsE  error
}

type gtEntry struct {
	index uint64
	gt    []uint32
}

type grainEntry struct {
	index uint64
	data  []byte
}

const (
	maxCachedGTs    = 64
	maxCachedGrains = 8
)

// Open reads the header, descriptor and grain directory of a sparse VMDK
// extent of size bytes. It handles streamOptimized images as qemu writes them
// (grain directory offset in the header, no footer) and as VMware writes them
// (GDAtEnd with a footer), and uncompressed monolithicSparse extents.
func Open(r io.ReaderAt, size int64) (*Image, error) {
	if size < SectorSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than a header sector", ErrNotVMDK, size)
	}
	sec := make([]byte, SectorSize)
	if err := readAt(r, sec, 0); err != nil {
		return nil, fmt.Errorf("vmdk: read header: %w", err)
	}
	hdr, err := parseHeader(sec)
	if err != nil {
		return nil, err
	}
	img := &Image{r: r, fileSize: size, hdr: hdr, eff: hdr}
	if hdr.GDOffset == GDAtEnd {
		if err := img.readFooter(); err != nil {
			return nil, err
		}
	}
	h := &img.eff
	if img.geo, err = h.check(size); err != nil {
		return nil, err
	}
	img.compressed = h.CompressAlgorithm == CompressDeflate
	img.markers = h.Flags&FlagMarkers != 0
	img.zeroGrain = h.Flags&FlagZeroGrain != 0
	if err := img.readDescriptor(); err != nil {
		return nil, err
	}
	gdBytes := int64(img.geo.gdEntries) * 4
	gdOff, ok := sectorOffset(h.GDOffset, size, gdBytes)
	if !ok {
		return nil, fmt.Errorf("%w: grain directory at sector %#x (%d bytes) lies outside the %d-byte file", ErrCorrupt, h.GDOffset, gdBytes, size)
	}
	buf := make([]byte, gdBytes)
	if err := readAt(r, buf, gdOff); err != nil {
		return nil, fmt.Errorf("vmdk: read grain directory at offset %#x: %w", gdOff, err)
	}
	img.gd = make([]uint32, img.geo.gdEntries)
	for i := range img.gd {
		img.gd[i] = binary.LittleEndian.Uint32(buf[i*4:])
	}
	img.gts = make(map[uint64]*list.Element)
	img.grains = make(map[uint64]*list.Element)
	return img, nil
}

// sectorOffset returns the byte offset of sector s if n bytes from there lie
// within a file of size bytes.
func sectorOffset(s uint64, size, n int64) (int64, bool) {
	if s > uint64(size)/SectorSize {
		return 0, false
	}
	off := int64(s) * SectorSize
	return off, n <= size-off
}

// readFooter reads the footer that a GDAtEnd header defers to: a footer
// marker, a copy of the header with the real grain directory offset, and an
// end-of-stream marker, in the last three sectors.
func (img *Image) readFooter() error {
	if img.fileSize < 4*SectorSize {
		return fmt.Errorf("%w: grain directory at end, but the %d-byte file has no room for a footer", ErrCorrupt, img.fileSize)
	}
	off := img.fileSize/SectorSize*SectorSize - 3*SectorSize
	b := make([]byte, 3*SectorSize)
	if err := readAt(img.r, b, off); err != nil {
		return fmt.Errorf("vmdk: read footer at offset %#x: %w", off, err)
	}
	le := binary.LittleEndian
	if le.Uint32(b[8:]) != 0 || le.Uint32(b[12:]) != markerFooter {
		return fmt.Errorf("%w: no footer marker at offset %#x", ErrCorrupt, off)
	}
	eos := b[2*SectorSize:]
	if le.Uint64(eos) != 0 || le.Uint32(eos[8:]) != 0 || le.Uint32(eos[12:]) != markerEOS {
		return fmt.Errorf("%w: no end-of-stream marker at offset %#x", ErrCorrupt, off+2*SectorSize)
	}
	f, err := parseHeader(b[SectorSize:])
	if err != nil {
		return fmt.Errorf("vmdk: footer at offset %#x: %w", off+SectorSize, err)
	}
	if f.GDOffset == GDAtEnd {
		return fmt.Errorf("%w: footer at offset %#x has no grain directory offset", ErrCorrupt, off+SectorSize)
	}
	img.eff = f
	img.footer = true
	return nil
}

func (img *Image) readDescriptor() error {
	h := &img.eff
	if h.DescriptorOffset == 0 || h.DescriptorSize == 0 {
		return nil
	}
	n := int64(h.DescriptorSize) * SectorSize
	if h.DescriptorSize > maxDescLen/SectorSize {
		return fmt.Errorf("%w: descriptor of %d sectors", ErrCorrupt, h.DescriptorSize)
	}
	off, ok := sectorOffset(h.DescriptorOffset, img.fileSize, n)
	if !ok {
		return fmt.Errorf("%w: descriptor at sector %#x (%d sectors) lies outside the %d-byte file", ErrCorrupt, h.DescriptorOffset, h.DescriptorSize, img.fileSize)
	}
	b := make([]byte, n)
	if err := readAt(img.r, b, off); err != nil {
		return fmt.Errorf("vmdk: read descriptor at offset %#x: %w", off, err)
	}
	img.desc = bytes.TrimRight(b, "\x00")
	return nil
}

// Size is the guest size in bytes (capacity times 512).
func (img *Image) Size() int64 { return img.geo.capBytes }

// Header returns the header in sector 0 as stored.
func (img *Image) Header() Header { return img.hdr }

// Descriptor returns the embedded descriptor text, without the NUL padding
// of its sectors.
func (img *Image) Descriptor() []byte { return bytes.Clone(img.desc) }

// Compressed reports whether grains are deflate-compressed (streamOptimized).
func (img *Image) Compressed() bool { return img.compressed }

// ReadAt reads the guest view. Unallocated and zeroed grains read as zeros.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("vmdk: read at negative offset %d", off)
	}
	if off >= img.geo.capBytes {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > img.geo.capBytes-off {
		n = int(img.geo.capBytes - off)
	}
	gb := img.geo.grainBytes
	for done := 0; done < n; {
		pos := off + int64(done)
		g := uint64(pos / gb)
		within := pos % gb
		chunk := int(min(gb-within, int64(n-done)))
		data, err := img.grain(g)
		if err != nil {
			return done, err
		}
		dst := p[done : done+chunk]
		if data == nil {
			clear(dst)
		} else {
			copy(dst, data[within:])
		}
		done += chunk
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// grainLen is the number of guest bytes grain g holds: a whole grain, or
// what is left of the guest for the last one.
func (img *Image) grainLen(g uint64) int64 {
	return min(img.geo.grainBytes, img.geo.capBytes-int64(g)*img.geo.grainBytes)
}

// gte returns the grain table entry of grain g (a sector offset, 0 for an
// unallocated grain).
func (img *Image) gte(g uint64) (uint32, error) {
	n := uint64(img.eff.NumGTEsPerGT)
	t := g / n
	img.mu.Lock()
	if e, ok := img.gts[t]; ok {
		img.gtLRU.MoveToFront(e)
		v := e.Value.(*gtEntry).gt[g%n]
		img.mu.Unlock()
		return v, nil
	}
	img.mu.Unlock()
	gt, err := img.readGT(img.gd[t], t)
	if err != nil || gt == nil {
		return 0, err
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if _, ok := img.gts[t]; !ok {
		img.gts[t] = img.gtLRU.PushFront(&gtEntry{index: t, gt: gt})
		if img.gtLRU.Len() > maxCachedGTs {
			old := img.gtLRU.Remove(img.gtLRU.Back()).(*gtEntry)
			delete(img.gts, old.index)
		}
	}
	return gt[g%n], nil
}

// readGT reads the grain table at sector s (nil for s == 0).
func (img *Image) readGT(s uint32, t uint64) ([]uint32, error) {
	if s == 0 {
		return nil, nil
	}
	n := int64(img.eff.NumGTEsPerGT)
	off, ok := sectorOffset(uint64(s), img.fileSize, n*4)
	if !ok {
		return nil, fmt.Errorf("%w: grain table %d at offset %#x lies outside the %d-byte file", ErrCorrupt, t, int64(s)*SectorSize, img.fileSize)
	}
	b := make([]byte, n*4)
	if err := readAt(img.r, b, off); err != nil {
		return nil, fmt.Errorf("vmdk: read grain table %d at offset %#x: %w", t, off, err)
	}
	gt := make([]uint32, n)
	for i := range gt {
		gt[i] = binary.LittleEndian.Uint32(b[i*4:])
	}
	return gt, nil
}

// grain returns the guest bytes of grain g (grainLen(g) of them), or nil if
// the grain reads as zeros. The returned slice must not be modified.
func (img *Image) grain(g uint64) ([]byte, error) {
	img.mu.Lock()
	if e, ok := img.grains[g]; ok {
		img.grLRU.MoveToFront(e)
		d := e.Value.(*grainEntry).data
		img.mu.Unlock()
		return d, nil
	}
	img.mu.Unlock()
	s, err := img.gte(g)
	if err != nil {
		return nil, err
	}
	if s == 0 || (img.zeroGrain && s == gteZeroed) {
		return nil, nil
	}
	data, _, err := img.readGrain(g, s, nil)
	if err != nil {
		return nil, err
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if _, ok := img.grains[g]; !ok {
		img.grains[g] = img.grLRU.PushFront(&grainEntry{index: g, data: data})
		if img.grLRU.Len() > maxCachedGrains {
			old := img.grLRU.Remove(img.grLRU.Back()).(*grainEntry)
			delete(img.grains, old.index)
		}
	}
	return data, nil
}

// readGrain reads grain g stored at sector s and returns its guest bytes and,
// for a compressed grain, its compressed bytes (the marker excluded). raw, if
// large enough, is used as the buffer for the compressed bytes.
func (img *Image) readGrain(g uint64, s uint32, raw []byte) (data, comp []byte, err error) {
	lba := g * img.eff.GrainSize
	off := int64(s) * SectorSize
	at := off // the grain's offset, for errors; off moves past the marker
	gerr := func(e error) error { return &GrainError{LBA: lba, Offset: at, Err: e} }
	want := img.grainLen(g)
	if off >= img.fileSize {
		return nil, nil, gerr(fmt.Errorf("offset past the end of the %d-byte file", img.fileSize))
	}
	if !img.compressed {
		if want > img.fileSize-off {
			return nil, nil, gerr(fmt.Errorf("%d-byte grain runs past the end of the %d-byte file", want, img.fileSize))
		}
		data = make([]byte, want)
		if err := readAt(img.r, data, off); err != nil {
			return nil, nil, gerr(err)
		}
		return data, nil, nil
	}
	// A compressed grain takes at most about twice a grain (qemu reads two).
	limit := 2*img.geo.grainBytes + grainMark
	var n int64
	if img.markers {
		var m [grainMark]byte
		if err := readAt(img.r, m[:], off); err != nil {
			return nil, nil, gerr(fmt.Errorf("read grain marker: %w", err))
		}
		if got := binary.LittleEndian.Uint64(m[:]); got != lba {
			return nil, nil, gerr(fmt.Errorf("grain marker says LBA %#x", got))
		}
		n = int64(binary.LittleEndian.Uint32(m[8:]))
		if n == 0 || n > limit {
			return nil, nil, gerr(fmt.Errorf("grain marker says %d compressed bytes", n))
		}
		off += grainMark
		if n > img.fileSize-off {
			return nil, nil, gerr(fmt.Errorf("%d compressed bytes run past the end of the %d-byte file", n, img.fileSize))
		}
	} else {
		n = min(limit, img.fileSize-off)
	}
	if int64(cap(raw)) >= n {
		comp = raw[:n]
	} else {
		comp = make([]byte, n)
	}
	if err := readAt(img.r, comp, off); err != nil {
		return nil, nil, gerr(err)
	}
	data, used, err := inflateGrain(comp, want, img.geo.grainBytes)
	if err != nil {
		return nil, nil, gerr(err)
	}
	if img.markers && used != n {
		return nil, nil, gerr(fmt.Errorf("zlib stream ends after %d of the marker's %d bytes", used, n))
	}
	return data, comp[:used], nil
}

// inflateGrain decompresses one zlib stream holding want bytes (a grain may
// also hold a whole grain of full bytes where the guest ends earlier). It
// returns the first want bytes and how many compressed bytes the stream took.
func inflateGrain(comp []byte, want, full int64) ([]byte, int64, error) {
	br := bytes.NewReader(comp)
	zr, err := zlib.NewReader(br)
	if err != nil {
		return nil, 0, fmt.Errorf("zlib: %w", unprefix(err))
	}
	defer zr.Close()
	data := make([]byte, full+1)
	n, err := io.ReadFull(zr, data)
	switch {
	case err == nil:
		return nil, 0, fmt.Errorf("zlib: stream holds more than a grain (%d bytes)", full)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
	default:
		return nil, 0, fmt.Errorf("zlib: %w", unprefix(err))
	}
	if int64(n) != want && int64(n) != full {
		return nil, 0, fmt.Errorf("zlib: stream holds %d bytes, want %d", n, want)
	}
	// Check the stream's end (Adler-32) even when ReadFull stopped early.
	if _, err := zr.Read(make([]byte, 1)); err != io.EOF {
		if err == nil {
			err = errors.New("data after stream end")
		}
		return nil, 0, fmt.Errorf("zlib: %w", unprefix(err))
	}
	return data[:want], int64(len(comp)) - int64(br.Len()), nil
}

// unprefix keeps "invalid checksum" from reading "zlib: zlib: invalid checksum".
func unprefix(err error) error {
	msg := err.Error()
	if len(msg) > 6 && msg[:6] == "zlib: " {
		return &wrapped{msg: msg[6:], err: err}
	}
	return err
}

type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// readAt fills b from r at off; a full read that ends at EOF is no error.
func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

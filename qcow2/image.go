// Package qcow2 reads qcow2 disk images (versions 2 and 3) as their guest
// view, describes the host layout of an image as a compact Layout, and writes
// an image from a Layout and a guest stream, byte for byte as qemu-img does.
//
// Like archive/tar, it works on io.ReaderAt, io.Reader and io.Writer and
// knows nothing of files or recipes. Memory stays bounded: only the L1 table
// and a bounded number of L2 tables are held.
package qcow2

import (
	"bytes"
	"compress/flate"
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Sentinel errors; returned errors wrap one of them.
var (
	// ErrNotQcow2 means the data does not start with the qcow2 magic.
	ErrNotQcow2 = errors.New("qcow2: not a qcow2 image")
	// ErrUnsupported means a valid image uses a feature this package does not
	// implement (backing file, encryption, external data file, subclusters,
	// zstd compression, or a layout the writer cannot reproduce).
	ErrUnsupported = errors.New("qcow2: unsupported")
	// ErrCorrupt means the image contradicts the format.
	ErrCorrupt = errors.New("qcow2: corrupt image")
	// ErrInvalidLayout means a Layout is inconsistent.
	ErrInvalidLayout = errors.New("qcow2: invalid layout")
)

// Entry bits and masks (see qemu's docs/interop/qcow2.txt).
const (
	flagCopied     = 1 << 63
	flagCompressed = 1 << 62
	flagZero       = 1 << 0
	offsetMask     = 0x00fffffffffffe00
)

// Extent is a range of the guest view. Data extents are allocated clusters
// (plain or compressed); Zero extents are clusters explicitly marked as
// reading zeros. Ranges outside all extents are unallocated and read as zeros.
type Extent struct {
	Off  int64 `json:"off"`
	Len  int64 `json:"len"`
	Zero bool  `json:"zero,omitempty"`
}

// Image is an open qcow2 image. Its methods are safe for concurrent use.
type Image struct {
	r        io.ReaderAt
	fileSize int64
	hdr      Header

	cb        uint  // cluster bits
	cs        int64 // cluster size
	l2Bits    uint  // log2 of entries per L2 table
	size      int64 // virtual size
	l1        []uint64
	csizeSh   uint
	csizeMask uint64
	coffMask  uint64

	mu     sync.Mutex
	cache  map[int64]*list.Element // L1 index -> element holding *l2Table
	lru    list.List
	maxL2  int
	zclust struct { // last decompressed cluster, for sequential readers
		host uint64
		data []byte
	}
	inflater io.ReadCloser
}

type l2Table struct {
	l1Index int64
	entries []uint64
}

// l2CacheBytes bounds the L2 tables kept in memory.
const l2CacheBytes = 8 << 20

// Open reads and checks the header and the L1 table of the qcow2 image in r,
// which is fileSize bytes long.
func Open(r io.ReaderAt, fileSize int64) (*Image, error) {
	if fileSize < 0 {
		return nil, fmt.Errorf("qcow2: negative file size %d", fileSize)
	}
	// Read the fixed header first, then the whole of cluster 0 for extensions.
	first := make([]byte, min(fileSize, v3HeaderLength+8))
	if _, err := readFull(r, first, 0, fileSize); err != nil {
		return nil, fmt.Errorf("qcow2: read header: %w", err)
	}
	if len(first) < 4 || binary.BigEndian.Uint32(first) != Magic {
		return nil, ErrNotQcow2
	}
	if len(first) >= 24 {
		cb := binary.BigEndian.Uint32(first[20:])
		if cb >= minClusterBits && cb <= maxClusterBits {
			first = make([]byte, min(fileSize, int64(1)<<cb))
			if _, err := readFull(r, first, 0, fileSize); err != nil {
				return nil, fmt.Errorf("qcow2: read header cluster: %w", err)
			}
		}
	}
	h, err := parseHeader(first)
	if err != nil {
		return nil, err
	}
	img := &Image{r: r, fileSize: fileSize, hdr: h}
	img.cb = uint(h.ClusterBits)
	img.cs = int64(1) << img.cb
	img.l2Bits = img.cb - 3
	img.size = int64(h.Size)
	img.csizeSh = 62 - (img.cb - 8)
	img.csizeMask = (1 << (img.cb - 8)) - 1
	img.coffMask = (1 << img.csizeSh) - 1
	img.maxL2 = max(2, int(l2CacheBytes>>img.cb))
	img.cache = make(map[int64]*list.Element)

	need := img.l1Needed()
	if need > int64(h.L1Size) {
		return nil, fmt.Errorf("%w: header: L1 table has %d entries, virtual size %d needs %d", ErrCorrupt, h.L1Size, h.Size, need)
	}
	if need > 0 {
		if int64(h.L1TableOffset) >= fileSize || need*8 > fileSize-int64(h.L1TableOffset) {
			return nil, fmt.Errorf("%w: L1 table at 0x%x (%d entries) extends past end of file (%d bytes)", ErrCorrupt, h.L1TableOffset, need, fileSize)
		}
		buf := make([]byte, need*8)
		if _, err := readFull(r, buf, int64(h.L1TableOffset), fileSize); err != nil {
			return nil, fmt.Errorf("qcow2: read L1 table at 0x%x: %w", h.L1TableOffset, err)
		}
		img.l1 = make([]uint64, need)
		for i := range img.l1 {
			img.l1[i] = binary.BigEndian.Uint64(buf[i*8:])
		}
		if err := img.checkL1(); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// checkL1 rejects two L1 entries sharing an L2 table: qemu never writes that,
// and it would multiply the work of Extents and Layout.
func (img *Image) checkL1() error {
	offs := make([]uint64, 0, len(img.l1))
	for _, e := range img.l1 {
		if o := e & offsetMask; o != 0 {
			offs = append(offs, o)
		}
	}
	slices.Sort(offs)
	for i := 1; i < len(offs); i++ {
		if offs[i] == offs[i-1] {
			return fmt.Errorf("%w: L1 table at 0x%x: L2 table at 0x%x is used by two L1 entries", ErrCorrupt, img.hdr.L1TableOffset, offs[i])
		}
	}
	return nil
}

// l1Needed is the number of L1 entries the virtual size needs.
func (img *Image) l1Needed() int64 {
	clusters := (img.size + img.cs - 1) >> img.cb
	return (clusters + (int64(1) << img.l2Bits) - 1) >> img.l2Bits
}

// Header returns the image header.
func (img *Image) Header() Header {
	h := img.hdr
	h.Extensions = append([]Extension(nil), h.Extensions...)
	return h
}

// Size returns the virtual (guest) size in bytes.
func (img *Image) Size() int64 { return img.size }

// FileSize returns the size of the host file given to Open.
func (img *Image) FileSize() int64 { return img.fileSize }

// readFull reads len(p) bytes at off; bytes past the end of the file (size
// bytes) read as zeros, as they do for qemu.
func readFull(r io.ReaderAt, p []byte, off, size int64) (int, error) {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		if off+int64(n) >= size {
			clear(p[n:])
			return len(p), nil
		}
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// l2 returns the L2 table for L1 index i, or nil if it is unallocated.
func (img *Image) l2(i int64) (*l2Table, error) {
	e := img.l1[i]
	off := e & offsetMask
	if off == 0 {
		return nil, nil
	}
	img.mu.Lock()
	if el, ok := img.cache[i]; ok {
		img.lru.MoveToFront(el)
		t := el.Value.(*l2Table)
		img.mu.Unlock()
		return t, nil
	}
	img.mu.Unlock()
	t, err := img.loadL2(i)
	if err != nil {
		return nil, err
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if el, ok := img.cache[i]; ok {
		return el.Value.(*l2Table), nil
	}
	img.cache[i] = img.lru.PushFront(t)
	for img.lru.Len() > img.maxL2 {
		old := img.lru.Back()
		img.lru.Remove(old)
		delete(img.cache, old.Value.(*l2Table).l1Index)
	}
	return t, nil
}

func (img *Image) loadL2(i int64) (*l2Table, error) {
	e := img.l1[i]
	off := e & offsetMask
	guest := i << (img.l2Bits + img.cb)
	if off&uint64(img.cs-1) != 0 {
		return nil, fmt.Errorf("%w: L1 entry %d (guest offset 0x%x): L2 table offset 0x%x not aligned to cluster size", ErrCorrupt, i, guest, off)
	}
	if off >= uint64(img.fileSize) {
		return nil, fmt.Errorf("%w: L1 entry %d (guest offset 0x%x): L2 table offset 0x%x points past end of file (%d bytes)", ErrCorrupt, i, guest, off, img.fileSize)
	}
	buf := make([]byte, img.cs)
	if _, err := readFull(img.r, buf, int64(off), img.fileSize); err != nil {
		return nil, fmt.Errorf("qcow2: read L2 table at 0x%x: %w", off, err)
	}
	t := &l2Table{l1Index: i, entries: make([]uint64, img.cs/8)}
	for j := range t.entries {
		t.entries[j] = binary.BigEndian.Uint64(buf[j*8:])
	}
	return t, nil
}

// cluster kinds
const (
	kUnalloc = iota
	kZero
	kData
	kCompressed
)

// mapping describes one guest cluster.
type mapping struct {
	kind int
	host uint64 // data: host offset of the cluster; compressed: byte offset
	clen int64  // compressed: bytes of compressed data
}

// decode decodes the L2 entry of guest cluster c (with its L2 table t, which
// may be nil) and checks it.
func (img *Image) decode(t *l2Table, c int64) (mapping, error) {
	if t == nil {
		return mapping{kind: kUnalloc}, nil
	}
	e := t.entries[c&(int64(1)<<img.l2Bits-1)]
	guest := c << img.cb
	where := func() string {
		return fmt.Sprintf("L2 table at 0x%x for guest offset 0x%x", img.l1[t.l1Index]&offsetMask, guest)
	}
	if e&flagCompressed != 0 {
		coff := e & img.coffMask
		n := int64((e>>img.csizeSh)&img.csizeMask+1)*512 - int64(coff&511)
		if coff >= uint64(img.fileSize) {
			return mapping{}, fmt.Errorf("%w: %s: compressed cluster at 0x%x points past end of file (%d bytes)", ErrCorrupt, where(), coff, img.fileSize)
		}
		return mapping{kind: kCompressed, host: coff, clen: n}, nil
	}
	if e&flagZero != 0 {
		if img.hdr.Version < 3 {
			return mapping{}, fmt.Errorf("%w: %s: zero cluster flag in a version 2 image", ErrCorrupt, where())
		}
		return mapping{kind: kZero}, nil
	}
	off := e & offsetMask
	if off == 0 {
		return mapping{kind: kUnalloc}, nil
	}
	if off&uint64(img.cs-1) != 0 {
		return mapping{}, fmt.Errorf("%w: %s: data offset 0x%x not aligned to cluster size", ErrCorrupt, where(), off)
	}
	if off >= uint64(img.fileSize) {
		return mapping{}, fmt.Errorf("%w: %s: entry points past end of file (0x%x >= %d)", ErrCorrupt, where(), off, img.fileSize)
	}
	return mapping{kind: kData, host: off}, nil
}

// ReadAt reads the guest view. Unallocated and zero clusters read as zeros.
// It implements io.ReaderAt.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qcow2: negative guest offset %d", off)
	}
	if off >= img.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > img.size-off {
		p = p[:img.size-off]
		eof = io.EOF
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		c := pos >> img.cb
		t, err := img.l2(c >> img.l2Bits)
		if err != nil {
			return done, err
		}
		m, err := img.decode(t, c)
		if err != nil {
			return done, err
		}
		inCluster := pos & (img.cs - 1)
		n := min(int64(len(p)-done), img.cs-inCluster)
		switch m.kind {
		case kUnalloc, kZero:
			// Merge following clusters of the same L2 table that read as zeros.
			for n < int64(len(p)-done) && (c+1)>>img.l2Bits == c>>img.l2Bits {
				m2, err := img.decode(t, c+1)
				if err != nil || (m2.kind != kUnalloc && m2.kind != kZero) {
					break
				}
				c++
				n = min(int64(len(p)-done), n+img.cs)
			}
			clear(p[done : done+int(n)])
		case kData:
			// Merge following clusters that are contiguous on the host.
			for n < int64(len(p)-done) && (c+1)>>img.l2Bits == c>>img.l2Bits {
				m2, err := img.decode(t, c+1)
				if err != nil || m2.kind != kData || m2.host != m.host+uint64((c+1-(pos>>img.cb))<<img.cb) {
					break
				}
				c++
				n = min(int64(len(p)-done), n+img.cs)
			}
			host := int64(m.host) + inCluster
			if _, err := readFull(img.r, p[done:done+int(n)], host, img.fileSize); err != nil {
				return done, fmt.Errorf("qcow2: read data at host offset 0x%x (guest 0x%x): %w", host, pos, err)
			}
		case kCompressed:
			if err := img.readCompressed(p[done:done+int(n)], m, inCluster, pos); err != nil {
				return done, err
			}
		}
		done += int(n)
	}
	return done, eof
}

// readCompressed copies part of a compressed cluster into p.
func (img *Image) readCompressed(p []byte, m mapping, inCluster, pos int64) error {
	if img.hdr.CompressionType != CompressionZlib {
		return fmt.Errorf("%w: compressed cluster for guest offset 0x%x uses zstd compression", ErrUnsupported, pos)
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.zclust.data == nil || img.zclust.host != m.host {
		clen := min(m.clen, img.fileSize-int64(m.host))
		src := make([]byte, clen)
		if _, err := readFull(img.r, src, int64(m.host), img.fileSize); err != nil {
			return fmt.Errorf("qcow2: read compressed cluster at 0x%x: %w", m.host, err)
		}
		if img.zclust.data == nil {
			img.zclust.data = make([]byte, img.cs)
		}
		img.zclust.data = img.zclust.data[:img.cs]
		if img.inflater == nil {
			img.inflater = flate.NewReader(bytes.NewReader(src))
		} else if err := img.inflater.(flate.Resetter).Reset(bytes.NewReader(src), nil); err != nil {
			return err
		}
		if _, err := io.ReadFull(img.inflater, img.zclust.data); err != nil {
			img.zclust.data = nil
			return fmt.Errorf("%w: compressed cluster at 0x%x (%d bytes) for guest offset 0x%x: %v", ErrCorrupt, m.host, clen, pos, err)
		}
		img.zclust.host = m.host
	}
	copy(p, img.zclust.data[inCluster:])
	return nil
}

// Extents lists the allocated guest ranges in order, merged, clipped to the
// virtual size: data (plain or compressed) clusters, and clusters marked zero
// (Zero set). Everything else is unallocated and reads as zeros.
func (img *Image) Extents() ([]Extent, error) {
	var out []Extent
	add := func(off int64, zero bool) {
		n := min(img.cs, img.size-off)
		if k := len(out) - 1; k >= 0 && out[k].Zero == zero && out[k].Off+out[k].Len == off {
			out[k].Len += n
			return
		}
		out = append(out, Extent{Off: off, Len: n, Zero: zero})
	}
	err := img.eachMapped(func(c int64, m mapping) error {
		switch m.kind {
		case kData, kCompressed:
			add(c<<img.cb, false)
		case kZero:
			add(c<<img.cb, true)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachMapped calls fn, in guest order, for every cluster inside the virtual size whose L2
// table exists, with its decoded mapping: the one walk of the tables that Extents and
// CompressedClusters share.
func (img *Image) eachMapped(fn func(c int64, m mapping) error) error {
	clusters := (img.size + img.cs - 1) >> img.cb
	for i := range int64(len(img.l1)) {
		t, err := img.l2(i)
		if err != nil {
			return err
		}
		if t == nil {
			continue
		}
		first := i << img.l2Bits
		last := min(clusters, first+int64(1)<<img.l2Bits)
		for c := first; c < last; c++ {
			m, err := img.decode(t, c)
			if err != nil {
				return err
			}
			if err := fn(c, m); err != nil {
				return err
			}
		}
	}
	return nil
}

// NewGuestReader returns a sequential reader of the guest view of img. It also
// implements io.WriterTo (large reads) and io.Seeker.
func NewGuestReader(img *Image) io.Reader {
	return &guestReader{img: img}
}

type guestReader struct {
	img *Image
	off int64
}

func (g *guestReader) Read(p []byte) (int, error) {
	if g.off >= g.img.size {
		return 0, io.EOF
	}
	n, err := g.img.ReadAt(p, g.off)
	g.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

const guestChunk = 1 << 20

func (g *guestReader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, guestChunk)
	var total int64
	for g.off < g.img.size {
		n := min(int64(len(buf)), g.img.size-g.off)
		if _, err := g.img.ReadAt(buf[:n], g.off); err != nil && err != io.EOF {
			return total, err
		}
		m, err := w.Write(buf[:n])
		total += int64(m)
		g.off += int64(m)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (g *guestReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += g.off
	case io.SeekEnd:
		offset += g.img.size
	default:
		return 0, fmt.Errorf("qcow2: bad whence %d", whence)
	}
	if offset < 0 {
		return 0, fmt.Errorf("qcow2: seek to negative offset %d", offset)
	}
	g.off = offset
	return offset, nil
}

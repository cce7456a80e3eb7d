package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// ConvertOptions are the qemu-img convert settings PlanConvert models. The
// zero value means qemu 7.2's defaults for `qemu-img convert -O qcow2`.
type ConvertOptions struct {
	// ClusterSize is -o cluster_size (default 65536). Sizes below 4096 are
	// not modelled.
	ClusterSize int64
	// RefcountBits is -o refcount_bits (default 16).
	RefcountBits int
	// Compat is -o compat: "1.1" (default, version 3) or "0.10" (version 2).
	Compat string
	// SourceData lists the data regions of the raw source file as
	// lseek(SEEK_DATA/SEEK_HOLE) reports them, in order; nil means the source
	// has no holes. qemu-img skips holes without reading them and splits its
	// reads at their edges, which can move a refcount block by a few clusters
	// once the image grows past what the first refcount block covers
	// (2 GiB of host file with the defaults).
	SourceData []Extent
}

// qemu-img convert constants (qemu-img.c, include/block/block_int.h).
const (
	sectorSize      = 512
	convertBufSecs  = 2 << 20 / sectorSize // IO_BUF_SIZE
	convertMinSpars = 8                    // -S default: 4 KiB
	convertAlign    = 8                    // s.alignment for a qcow2 target
	maxRequestSecs  = (1<<31 - 1) / sectorSize
)

// PlanConvert computes the Layout that `qemu-img convert -f raw -O qcow2`
// (qemu 7.2) gives for the raw disk image read from src, which is srcSize
// bytes long. It reads src once, sequentially. Encode(w, raw, layout) then
// writes the same file as qemu-img (the raw data padded with zeros to a
// multiple of 512 bytes is the guest view).
func PlanConvert(src io.Reader, srcSize int64, opts *ConvertOptions) (*Layout, error) {
	var o ConvertOptions
	if opts != nil {
		o = *opts
	}
	if o.ClusterSize == 0 {
		o.ClusterSize = 65536
	}
	if o.RefcountBits == 0 {
		o.RefcountBits = 16
	}
	cs := o.ClusterSize
	if cs < 4096 || cs > 1<<maxClusterBits || cs&(cs-1) != 0 {
		return nil, fmt.Errorf("%w: plan: cluster size %d (want a power of two from 4096 to 2 MiB)", ErrUnsupported, cs)
	}
	if o.RefcountBits < 1 || o.RefcountBits > 64 || o.RefcountBits&(o.RefcountBits-1) != 0 {
		return nil, fmt.Errorf("%w: plan: refcount bits %d", ErrUnsupported, o.RefcountBits)
	}
	if srcSize < 0 || srcSize > maxVirtualSize {
		return nil, fmt.Errorf("%w: plan: source size %d", ErrUnsupported, srcSize)
	}
	cb := uint(bits.TrailingZeros64(uint64(cs)))
	order := uint32(bits.TrailingZeros(uint(o.RefcountBits)))
	vsize := (srcSize + sectorSize - 1) &^ (sectorSize - 1)

	h := Header{ClusterBits: uint32(cb), Size: uint64(vsize), RefcountTableOffset: uint64(cs), RefcountTableClusters: 1, RefcountOrder: order}
	switch o.Compat {
	case "", "1.1", "v3":
		h.Version = 3
		h.HeaderLength = 112
		// qemu leaves the feature name table out of 4 KiB (and smaller) header clusters.
		if cs > 4096 {
			h.Extensions = []Extension{{Type: ExtFeatureTable, Data: qemuFeatureTable()}}
		}
	case "0.10", "v2":
		if o.RefcountBits != 16 {
			return nil, fmt.Errorf("%w: plan: compat 0.10 needs refcount bits 16", ErrUnsupported)
		}
		h.Version = 2
		h.HeaderLength = v2HeaderLength
	default:
		return nil, fmt.Errorf("%w: plan: compat %q", ErrUnsupported, o.Compat)
	}

	a := &allocator{cb: cb, l2Bits: cb - 3, rbBits: cb + 3 - uint(order), rtEntries: cs / 8}
	a.rb = map[int64]int64{0: 2}
	a.end = 3 // header, refcount table, refcount block 0
	a.lastGuest = -1
	guestCl := (vsize + cs - 1) >> cb
	l1Size := (guestCl + int64(1)<<a.l2Bits - 1) >> a.l2Bits
	if l1Size*8 > maxL1Bytes {
		return nil, fmt.Errorf("%w: plan: virtual size %d needs an L1 table of %d entries", ErrUnsupported, vsize, l1Size)
	}
	h.L1Size = uint32(l1Size)
	if l1Size > 0 {
		off, err := a.alloc((l1Size*8 + cs - 1) >> cb)
		if err != nil {
			return nil, err
		}
		h.L1TableOffset = uint64(off << cb)
	}
	a.l2 = make(map[int64]int64)

	if err := a.convert(src, srcSize, vsize, o.SourceData); err != nil {
		return nil, err
	}

	l := &Layout{Header: h, Data: a.runs}
	if a.dataAllocated {
		l.FileSize = a.end << cb
	} else if l1Size > 0 {
		l.FileSize = int64(h.L1TableOffset) + l1Size*8
	} else {
		l.FileSize = 3 * cs
	}
	var maxRB int64
	for k := range a.rb {
		maxRB = max(maxRB, k)
	}
	l.RefcountBlocks = make([]int64, maxRB+1)
	for k, c := range a.rb {
		l.RefcountBlocks[k] = c
	}
	for i := range l1Size {
		if c, ok := a.l2[i]; ok {
			l.L2Tables = append(l.L2Tables, L2Table{L1Index: i, Host: c})
		}
	}
	if err := l.Validate(); err != nil {
		return nil, fmt.Errorf("qcow2: plan: %w", err)
	}
	return l, nil
}

// qemuFeatureTable is the feature name table qemu 7.2 writes.
func qemuFeatureTable() []byte {
	entries := []struct {
		kind, bit byte
		name      string
	}{
		{0, 0, "dirty bit"},
		{0, 1, "corrupt bit"},
		{0, 2, "external data file"},
		{0, 3, "compression type"},
		{0, 4, "extended L2 entries"},
		{1, 0, "lazy refcounts"},
		{2, 0, "bitmaps"},
		{2, 1, "raw external data"},
	}
	b := make([]byte, 48*len(entries))
	for i, e := range entries {
		b[i*48] = e.kind
		b[i*48+1] = e.bit
		copy(b[i*48+2:i*48+48], e.name)
	}
	return b
}

// allocator models qcow2's cluster allocation on a fresh image where nothing
// is ever freed: clusters are taken at the end of the file, and a refcount
// block is placed where qemu 7.2 places it when an allocation first touches
// the range it covers.
type allocator struct {
	cb, l2Bits, rbBits uint
	rtEntries          int64
	end                int64           // first free host cluster
	rb                 map[int64]int64 // refcount table index -> host cluster
	l2                 map[int64]int64 // L1 index -> host cluster
	runs               []Run
	lastGuest          int64 // last allocated guest cluster (they ascend)
	lastHost           int64
	dataAllocated      bool
}

// needRB returns the first refcount table index in clusters [s, s+n) that
// has no refcount block, or -1.
func (a *allocator) needRB(s, n int64) (int64, error) {
	for k := s >> a.rbBits; k <= (s+n-1)>>a.rbBits; k++ {
		if _, ok := a.rb[k]; !ok {
			if k >= a.rtEntries {
				return 0, fmt.Errorf("%w: plan: image needs a larger refcount table", ErrUnsupported)
			}
			return k, nil
		}
	}
	return -1, nil
}

// placeRB puts the refcount block for index k at host cluster c, which must
// describe itself.
func (a *allocator) placeRB(k, c int64) error {
	if c>>a.rbBits != k {
		return fmt.Errorf("%w: plan: refcount block for index %d would not describe itself", ErrUnsupported, k)
	}
	a.rb[k] = c
	return nil
}

// alloc models qcow2_alloc_clusters: n clusters at the end of the file, then
// any refcount block they need right after them.
func (a *allocator) alloc(n int64) (int64, error) {
	s := a.end
	a.end += n
	for {
		k, err := a.needRB(s, n)
		if err != nil || k < 0 {
			return s, err
		}
		if err := a.placeRB(k, a.end); err != nil {
			return 0, err
		}
		a.end++
	}
}

// allocAt models qcow2_alloc_clusters_at at the end of the file (pos ==
// a.end): a missing refcount block takes the first cluster of the range it
// covers and the allocation stops before it. It returns how many clusters
// were allocated at pos.
func (a *allocator) allocAt(pos, n int64) (int64, error) {
	if pos != a.end {
		return 0, nil
	}
	k, err := a.needRB(pos, n)
	if err != nil {
		return 0, err
	}
	if k < 0 {
		a.end += n
		return n, nil
	}
	b := k << a.rbBits
	if err := a.placeRB(k, b); err != nil {
		return 0, err
	}
	a.end = b + 1
	return b - pos, nil
}

func (a *allocator) mapData(guest, host, n int64) {
	if n <= 0 {
		return
	}
	a.dataAllocated = true
	if k := len(a.runs) - 1; k >= 0 && a.runs[k].Guest+a.runs[k].Count == guest && a.runs[k].Host+a.runs[k].Count == host {
		a.runs[k].Count += n
	} else {
		a.runs = append(a.runs, Run{Guest: guest, Host: host, Count: n})
	}
	a.lastGuest = guest + n - 1
	a.lastHost = host + n - 1
}

// write models a qcow2 write request of guest bytes [off, end) on the image
// being converted (qcow2_co_pwritev_part and qcow2_alloc_host_offset).
func (a *allocator) write(off, end int64) error {
	lastC := (end - 1) >> a.cb
	for pos := off; pos < end; {
		c := pos >> a.cb
		l1 := c >> a.l2Bits
		cEnd := min(lastC+1, (l1+1)<<a.l2Bits)
		next := min(end, cEnd<<a.cb)
		if _, ok := a.l2[l1]; !ok {
			h, err := a.alloc(1)
			if err != nil {
				return err
			}
			a.l2[l1] = h
			a.dataAllocated = true
		}
		if c <= a.lastGuest {
			// The first cluster was allocated by the previous request;
			// qemu tries to continue right after it on the host.
			if c+1 < cEnd {
				nb := cEnd - (c + 1)
				i, err := a.allocAt(a.lastHost+1, nb)
				if err != nil {
					return err
				}
				a.mapData(c+1, a.lastHost+1, i)
				if i < nb {
					next = (c + 1 + i) << a.cb
				}
			}
		} else {
			nb := cEnd - c
			h, err := a.alloc(nb)
			if err != nil {
				return err
			}
			a.mapData(c, h, nb)
		}
		pos = next
	}
	return nil
}

// convert walks the source like qemu-img convert: block status regions,
// 2 MiB reads, and is_allocated_sectors_min splitting each read into data
// to write and zeros to skip.
func (a *allocator) convert(src io.Reader, srcSize, vsize int64, data []Extent) error {
	total := vsize / sectorSize
	buf := make([]byte, convertBufSecs*sectorSize)
	zero := make([]bool, convertBufSecs)
	var srcPos int64 // bytes of src consumed
	readTo := func(p []byte, off int64) error {
		// Fill p with source bytes at off; past srcSize it is zero padding.
		if off > srcPos {
			if _, err := io.CopyN(io.Discard, src, off-srcPos); err != nil {
				return planEOF(srcPos, err)
			}
			srcPos = off
		}
		n := min(int64(len(p)), max(0, srcSize-off))
		if _, err := io.ReadFull(src, p[:n]); err != nil {
			return planEOF(srcPos, err)
		}
		srcPos += n
		clear(p[n:])
		return nil
	}
	regionIdx := 0
	var statusData bool
	var nextStatus int64
	for sector := int64(0); sector < total; {
		n := min(total-sector, maxRequestSecs)
		if nextStatus <= sector {
			isData, regionEnd := sourceStatus(data, &regionIdx, sector, srcSize)
			statusData = isData
			nextStatus = sector + min(n, regionEnd-sector)
		}
		n = min(n, nextStatus-sector)
		if !statusData {
			sector += n // holes are skipped: a new qcow2 reads as zeros
			continue
		}
		n = min(n, convertBufSecs)
		b := buf[:n*sectorSize]
		if err := readTo(b, sector*sectorSize); err != nil {
			return err
		}
		for i := range n {
			zero[i] = isZero(b[i*sectorSize : (i+1)*sectorSize])
		}
		// convert_co_write
		z := zero[:n]
		s := sector
		for len(z) > 0 {
			alloc, k := allocatedSectorsMin(z, s)
			if alloc {
				if err := a.write(s*sectorSize, (s+int64(k))*sectorSize); err != nil {
					return err
				}
			}
			s += int64(k)
			z = z[k:]
		}
		sector += n
	}
	return nil
}

func planEOF(at int64, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("qcow2: plan: source ends at offset %d: %w", at, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("qcow2: plan: read source at %d: %w", at, err)
}

// sourceStatus tells whether sector is in a data region of the source and
// where (in sectors) that region or hole ends, as file-posix reports it.
func sourceStatus(data []Extent, idx *int, sector, srcSize int64) (bool, int64) {
	endSecs := (srcSize + sectorSize - 1) / sectorSize
	if data == nil {
		return true, endSecs
	}
	off := sector * sectorSize
	for *idx < len(data) && data[*idx].Off+data[*idx].Len <= off {
		*idx++
	}
	if *idx == len(data) {
		return false, endSecs
	}
	e := data[*idx]
	if off >= e.Off {
		return true, (e.Off + e.Len + sectorSize - 1) / sectorSize
	}
	return false, e.Off / sectorSize
}

var zeroSector = make([]byte, sectorSize)

func isZero(b []byte) bool { return bytes.Equal(b, zeroSector[:len(b)]) }

// allocatedSectors models qemu-img's is_allocated_sectors: the length of the
// run of sectors with the same state as the first, with the end moved to an
// alignment boundary where that helps.
func allocatedSectors(z []bool, sector int64) (bool, int) {
	isZ := z[0]
	i := 1
	for i < len(z) && z[i] == isZ {
		i++
	}
	if i == len(z) {
		return !isZ, i
	}
	tail := int((sector + int64(i)) & (convertAlign - 1))
	if tail != 0 {
		if isZ && i <= tail {
			isZ = false
		}
		if !isZ {
			i = min(i+convertAlign-tail, len(z))
		} else {
			i -= tail
		}
	}
	return !isZ, i
}

// allocatedSectorsMin models is_allocated_sectors_min with min = 8 sectors:
// a data run absorbs zero runs shorter than min that are followed by data.
func allocatedSectorsMin(z []bool, sector int64) (bool, int) {
	minZ := min(convertMinSpars, len(z))
	alloc, k := allocatedSectors(z, sector)
	if !alloc {
		return false, k
	}
	used, checked := k, k
	for checked < len(z) {
		a, k := allocatedSectors(z[checked:], sector+int64(checked))
		checked += k
		if a {
			used = checked
		} else if k >= minZ {
			break
		}
	}
	return true, used
}

package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
)

// Layout describes where everything sits in a qcow2 host file, compactly
// enough to store beside a recipe: the header, the file size, the host
// clusters of the refcount blocks and L2 tables, and the guest-to-host
// mapping of data clusters as runs. With the guest data it determines every
// byte of the file: refcount blocks count each described cluster once, L1 and
// L2 entries carry the COPIED flag, and everything not described is zero.
//
// Cluster numbers are host or guest offsets divided by the cluster size.
type Layout struct {
	Header   Header `json:"header"`
	FileSize int64  `json:"fileSize"`
	// RefcountBlocks[i] is the host cluster of the refcount block for
	// refcount table entry i, or 0 if the entry is empty.
	RefcountBlocks []int64   `json:"refcountBlocks"`
	L2Tables       []L2Table `json:"l2Tables,omitempty"`
	Data           []Run     `json:"data,omitempty"`
}

// L2Table places the L2 table for L1 entry L1Index at host cluster Host.
type L2Table struct {
	L1Index int64 `json:"l1"`
	Host    int64 `json:"host"`
}

// Run maps Count guest clusters starting at Guest to host clusters starting at Host.
type Run struct {
	Guest int64 `json:"guest"`
	Host  int64 `json:"host"`
	Count int64 `json:"count"`
}

// object kinds, in the order they break ties (none should tie).
const (
	objHeader = iota
	objRefTable
	objRefBlock
	objL1
	objL2
	objData
)

var objNames = [...]string{"header", "refcount table", "refcount block", "L1 table", "L2 table", "data run"}

type object struct {
	kind  int
	host  int64 // first host cluster
	count int64 // clusters
	idx   int64 // refcount table index, L1 index, or index into Data
}

// plan is a checked Layout with the lookups the writer needs.
type plan struct {
	l         *Layout
	cb        uint
	cs        int64
	l2Bits    uint
	objs      []object        // by host cluster
	byGuest   []Run           // data runs by guest cluster
	l2Host    map[int64]int64 // L1 index -> host cluster
	rbBits    uint            // log2 of refcounts per refcount block
	refBits   int             // bits per refcount
	l1Entries int64           // L1Size
	guestCl   int64           // guest clusters
}

func lerr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidLayout}, args...)...)
}

// plan checks the layout and indexes it.
func (l *Layout) plan() (*plan, error) {
	h := &l.Header
	switch h.Version {
	case 2:
		if h.RefcountOrder != 4 || h.HeaderLength != v2HeaderLength || h.IncompatibleFeatures != 0 || h.CompatibleFeatures != 0 || h.AutoclearFeatures != 0 || h.CompressionType != 0 {
			return nil, lerr("version 2 header with version 3 fields set")
		}
	case 3:
	default:
		return nil, lerr("version %d (want 2 or 3)", h.Version)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, lerr("cluster_bits %d outside %d..%d", h.ClusterBits, minClusterBits, maxClusterBits)
	}
	p := &plan{l: l, cb: uint(h.ClusterBits)}
	p.cs = int64(1) << p.cb
	p.l2Bits = p.cb - 3
	if h.Version == 3 && (h.HeaderLength < v3HeaderLength || int64(h.HeaderLength) > p.cs) {
		return nil, lerr("header_length %d", h.HeaderLength)
	}
	if h.RefcountOrder > 6 {
		return nil, lerr("refcount_order %d", h.RefcountOrder)
	}
	if h.CryptMethod != 0 || h.BackingFileOffset != 0 || h.BackingFileSize != 0 || h.BackingFile != "" || h.NbSnapshots != 0 || h.SnapshotsOffset != 0 {
		return nil, lerr("encryption, backing files and snapshots cannot be written")
	}
	if h.IncompatibleFeatures&(IncompatExternalData|IncompatExtendedL2) != 0 {
		return nil, lerr("external data files and extended L2 entries cannot be written")
	}
	for _, e := range h.Extensions {
		if e.Type == 0 || len(e.Data) > int(p.cs) {
			return nil, lerr("header extension of type 0x%x and %d bytes", e.Type, len(e.Data))
		}
	}
	if int64(headerBytes(h)) > p.cs {
		return nil, lerr("header and extensions need %d bytes, more than one cluster (%d)", headerBytes(h), p.cs)
	}
	if h.Size > maxVirtualSize {
		return nil, lerr("virtual size %d is absurd", h.Size)
	}
	p.guestCl = (int64(h.Size) + p.cs - 1) >> p.cb
	need := (p.guestCl + int64(1)<<p.l2Bits - 1) >> p.l2Bits
	if int64(h.L1Size) < need || int64(h.L1Size)*8 > maxL1Bytes {
		return nil, lerr("L1 size %d (virtual size needs %d)", h.L1Size, need)
	}
	p.l1Entries = int64(h.L1Size)
	if h.L1TableOffset%uint64(p.cs) != 0 || h.RefcountTableOffset%uint64(p.cs) != 0 {
		return nil, lerr("L1 table offset 0x%x or refcount table offset 0x%x not cluster aligned", h.L1TableOffset, h.RefcountTableOffset)
	}
	if h.RefcountTableClusters == 0 || int64(h.RefcountTableClusters)*p.cs > maxRefTableBytes {
		return nil, lerr("refcount table of %d clusters", h.RefcountTableClusters)
	}
	if l.FileSize <= 0 || l.FileSize > maxVirtualSize {
		return nil, lerr("file size %d", l.FileSize)
	}
	p.refBits = 1 << h.RefcountOrder
	p.rbBits = p.cb + 3 - uint(h.RefcountOrder)
	lastHost := (l.FileSize - 1) >> p.cb // every described cluster must start inside the file

	add := func(kind int, host, count, idx int64) error {
		if host < 0 || count <= 0 || host > lastHost || count-1 > lastHost-host {
			return lerr("%s %d at host cluster %d (%d clusters) lies outside the file (%d bytes)", objNames[kind], idx, host, count, l.FileSize)
		}
		p.objs = append(p.objs, object{kind: kind, host: host, count: count, idx: idx})
		return nil
	}
	if err := add(objHeader, 0, 1, 0); err != nil {
		return nil, err
	}
	if err := add(objRefTable, int64(h.RefcountTableOffset>>p.cb), int64(h.RefcountTableClusters), 0); err != nil {
		return nil, err
	}
	if int64(len(l.RefcountBlocks)) > int64(h.RefcountTableClusters)*p.cs/8 {
		return nil, lerr("%d refcount blocks but the refcount table has room for %d", len(l.RefcountBlocks), int64(h.RefcountTableClusters)*p.cs/8)
	}
	for i, rb := range l.RefcountBlocks {
		if rb == 0 {
			continue
		}
		if err := add(objRefBlock, rb, 1, int64(i)); err != nil {
			return nil, err
		}
	}
	if h.L1Size > 0 {
		if err := add(objL1, int64(h.L1TableOffset>>p.cb), (int64(h.L1Size)*8+p.cs-1)>>p.cb, 0); err != nil {
			return nil, err
		}
	}
	p.l2Host = make(map[int64]int64, len(l.L2Tables))
	for _, t := range l.L2Tables {
		if t.L1Index < 0 || t.L1Index >= need {
			return nil, lerr("L2 table for L1 index %d, the virtual size needs %d L1 entries", t.L1Index, need)
		}
		if _, dup := p.l2Host[t.L1Index]; dup {
			return nil, lerr("two L2 tables for L1 index %d", t.L1Index)
		}
		if err := add(objL2, t.Host, 1, t.L1Index); err != nil {
			return nil, err
		}
		p.l2Host[t.L1Index] = t.Host
	}
	for i, r := range l.Data {
		if r.Count <= 0 || r.Guest < 0 || r.Guest >= p.guestCl || r.Count > p.guestCl-r.Guest {
			return nil, lerr("data run %d (guest cluster %d, %d clusters) outside the %d guest clusters", i, r.Guest, r.Count, p.guestCl)
		}
		for li := r.Guest >> p.l2Bits; li <= (r.Guest+r.Count-1)>>p.l2Bits; li++ {
			if _, ok := p.l2Host[li]; !ok {
				return nil, lerr("data run %d (guest cluster %d) has no L2 table for L1 index %d", i, r.Guest, li)
			}
		}
		if err := add(objData, r.Host, r.Count, int64(i)); err != nil {
			return nil, err
		}
	}
	p.byGuest = slices.Clone(l.Data)
	slices.SortFunc(p.byGuest, func(a, b Run) int { return cmp64(a.Guest, b.Guest) })
	for i := 1; i < len(p.byGuest); i++ {
		if a := p.byGuest[i-1]; a.Guest+a.Count > p.byGuest[i].Guest {
			return nil, lerr("data runs overlap at guest cluster %d", p.byGuest[i].Guest)
		}
	}
	slices.SortFunc(p.objs, func(a, b object) int { return cmp64(a.host, b.host) })
	for i := 1; i < len(p.objs); i++ {
		a, b := p.objs[i-1], p.objs[i]
		if a.host+a.count > b.host {
			return nil, lerr("%s %d (host cluster %d) overlaps %s %d (host cluster %d)", objNames[a.kind], a.idx, a.host, objNames[b.kind], b.idx, b.host)
		}
	}
	// Every described cluster needs a refcount block to count it.
	for _, o := range p.objs {
		for k := o.host >> p.rbBits; k <= (o.host+o.count-1)>>p.rbBits; k++ {
			if k >= int64(len(l.RefcountBlocks)) || l.RefcountBlocks[k] == 0 {
				return nil, lerr("%s %d at host cluster %d has no refcount block (refcount table index %d)", objNames[o.kind], o.idx, o.host, k)
			}
		}
	}
	return p, nil
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Validate checks that the layout is consistent and could be written.
func (l *Layout) Validate() error {
	_, err := l.plan()
	return err
}

// sink receives the file in host order from walk.
type sink interface {
	meta(host int64, b []byte, what string) error
	zeros(host, n int64) error
	data(host, guest, n int64) error
}

// walk produces the whole file, in host order, clipped to FileSize.
func (p *plan) walk(s sink) error {
	buf := make([]byte, p.cs)
	pos := int64(0)
	fileSize := p.l.FileSize
	gap := func(to int64) error {
		to = min(to, fileSize)
		if to > pos {
			if err := s.zeros(pos, to-pos); err != nil {
				return err
			}
			pos = to
		}
		return nil
	}
	emit := func(b []byte, what string) error {
		n := min(int64(len(b)), fileSize-pos)
		if n <= 0 {
			return nil
		}
		if err := s.meta(pos, b[:n], what); err != nil {
			return err
		}
		pos += n
		return nil
	}
	for _, o := range p.objs {
		if err := gap(o.host << p.cb); err != nil {
			return err
		}
		if o.kind == objData {
			// The guest bytes of the run; past the virtual size, zeros.
			r := p.l.Data[o.idx]
			n := min(o.count<<p.cb, fileSize-pos)
			guest := r.Guest << p.cb
			inGuest := min(n, max(0, int64(p.l.Header.Size)-guest))
			if inGuest > 0 {
				if err := s.data(pos, guest, inGuest); err != nil {
					return err
				}
			}
			if n > inGuest {
				if err := s.zeros(pos+inGuest, n-inGuest); err != nil {
					return err
				}
			}
			pos += n
			continue
		}
		for c := range o.count {
			if pos >= fileSize {
				return nil
			}
			clear(buf)
			var what string
			switch o.kind {
			case objHeader:
				if err := encodeHeader(&p.l.Header, buf); err != nil {
					return err
				}
				what = "header"
			case objRefTable:
				p.refTable(c, buf)
				what = fmt.Sprintf("refcount table cluster %d", c)
			case objRefBlock:
				p.refBlock(o.idx, buf)
				what = fmt.Sprintf("refcount block %d", o.idx)
			case objL1:
				p.l1Table(c, buf)
				what = fmt.Sprintf("L1 table cluster %d", c)
			case objL2:
				p.l2Table(o.idx, buf)
				what = fmt.Sprintf("L2 table for L1 index %d", o.idx)
			}
			if err := emit(buf, what); err != nil {
				return err
			}
		}
	}
	return gap(fileSize)
}

func (p *plan) refTable(c int64, buf []byte) {
	per := p.cs / 8
	for j := range per {
		k := c*per + j
		if k >= int64(len(p.l.RefcountBlocks)) {
			return
		}
		binary.BigEndian.PutUint64(buf[j*8:], uint64(p.l.RefcountBlocks[k]<<p.cb))
	}
}

// refBlock fills in refcount block k: 1 for each described cluster.
func (p *plan) refBlock(k int64, buf []byte) {
	first := k << p.rbBits
	last := first + int64(1)<<p.rbBits
	i := sort.Search(len(p.objs), func(i int) bool { return p.objs[i].host+p.objs[i].count > first })
	for ; i < len(p.objs) && p.objs[i].host < last; i++ {
		o := p.objs[i]
		for c := max(o.host, first); c < min(o.host+o.count, last); c++ {
			j := c - first
			switch {
			case p.refBits < 8:
				per := int64(8 / p.refBits)
				buf[j/per] |= 1 << (uint(j%per) * uint(p.refBits))
			default:
				w := int64(p.refBits / 8)
				buf[j*w+w-1] = 1
			}
		}
	}
}

func (p *plan) l1Table(c int64, buf []byte) {
	per := p.cs / 8
	for j := range per {
		i := c*per + j
		if i >= p.l1Entries {
			return
		}
		if h, ok := p.l2Host[i]; ok {
			binary.BigEndian.PutUint64(buf[j*8:], uint64(h<<p.cb)|flagCopied)
		}
	}
}

func (p *plan) l2Table(l1 int64, buf []byte) {
	first := l1 << p.l2Bits
	last := first + int64(1)<<p.l2Bits
	i := sort.Search(len(p.byGuest), func(i int) bool { return p.byGuest[i].Guest+p.byGuest[i].Count > first })
	for ; i < len(p.byGuest) && p.byGuest[i].Guest < last; i++ {
		r := p.byGuest[i]
		for g := max(r.Guest, first); g < min(r.Guest+r.Count, last); g++ {
			host := r.Host + (g - r.Guest)
			binary.BigEndian.PutUint64(buf[(g-first)*8:], uint64(host<<p.cb)|flagCopied)
		}
	}
}

// Layout describes the host layout of img. It fails with ErrUnsupported when
// the file holds anything the Layout cannot describe (compressed or zero
// clusters, snapshots, leaked or shared clusters, stray bytes between
// clusters, entries without the COPIED flag...): it rebuilds every metadata
// cluster from the result and compares it with the file, and checks that all
// undescribed bytes are zero. Data clusters are not read.
func (img *Image) Layout() (*Layout, error) {
	h := img.Header()
	if h.NbSnapshots != 0 {
		return nil, fmt.Errorf("%w: layout: image has %d internal snapshots", ErrUnsupported, h.NbSnapshots)
	}
	l := &Layout{Header: h, FileSize: img.fileSize}

	// Refcount table.
	if h.RefcountTableOffset >= uint64(img.fileSize) {
		return nil, fmt.Errorf("%w: refcount table at 0x%x points past end of file", ErrCorrupt, h.RefcountTableOffset)
	}
	rt := make([]byte, img.cs)
	for c := range int64(h.RefcountTableClusters) {
		off := int64(h.RefcountTableOffset) + c*img.cs
		if off >= img.fileSize {
			break
		}
		if _, err := readFull(img.r, rt, off, img.fileSize); err != nil {
			return nil, fmt.Errorf("qcow2: read refcount table at 0x%x: %w", off, err)
		}
		for j := int64(0); j < img.cs/8; j++ {
			e := binary.BigEndian.Uint64(rt[j*8:])
			if e == 0 {
				continue
			}
			if e&uint64(img.cs-1) != 0 || e >= uint64(img.fileSize) {
				return nil, fmt.Errorf("%w: refcount table entry %d at 0x%x: refcount block offset 0x%x misaligned or past end of file", ErrCorrupt, c*img.cs/8+j, off+j*8, e)
			}
			k := c*img.cs/8 + j
			for int64(len(l.RefcountBlocks)) < k {
				l.RefcountBlocks = append(l.RefcountBlocks, 0)
			}
			l.RefcountBlocks = append(l.RefcountBlocks, int64(e>>img.cb))
		}
	}

	// L1 and L2 tables, data runs in guest order.
	clusters := (img.size + img.cs - 1) >> img.cb
	for i := range int64(len(img.l1)) {
		t, err := img.l2(i)
		if err != nil {
			return nil, err
		}
		if t == nil {
			continue
		}
		l.L2Tables = append(l.L2Tables, L2Table{L1Index: i, Host: int64(img.l1[i]&offsetMask) >> img.cb})
		first := i << img.l2Bits
		for c := first; c < min(clusters, first+int64(1)<<img.l2Bits); c++ {
			m, err := img.decode(t, c)
			if err != nil {
				return nil, err
			}
			switch m.kind {
			case kCompressed:
				return nil, fmt.Errorf("%w: layout: compressed cluster for guest offset 0x%x", ErrUnsupported, c<<img.cb)
			case kZero:
				return nil, fmt.Errorf("%w: layout: zero cluster for guest offset 0x%x", ErrUnsupported, c<<img.cb)
			case kData:
				host := int64(m.host) >> img.cb
				if k := len(l.Data) - 1; k >= 0 && l.Data[k].Guest+l.Data[k].Count == c && l.Data[k].Host+l.Data[k].Count == host {
					l.Data[k].Count++
				} else {
					l.Data = append(l.Data, Run{Guest: c, Host: host, Count: 1})
				}
			}
		}
	}
	p, err := l.plan()
	if err != nil {
		return nil, fmt.Errorf("%w: layout of this image: %v", ErrUnsupported, err)
	}
	if err := p.walk(&verifySink{img: img}); err != nil {
		return nil, err
	}
	return l, nil
}

// verifySink compares what the layout would write with the file.
type verifySink struct {
	img *Image
	buf []byte
}

func (v *verifySink) read(host, n int64) ([]byte, error) {
	if int64(cap(v.buf)) < n {
		v.buf = make([]byte, n)
	}
	b := v.buf[:n]
	if _, err := readFull(v.img.r, b, host, v.img.fileSize); err != nil {
		return nil, fmt.Errorf("qcow2: layout: read at 0x%x: %w", host, err)
	}
	return b, nil
}

func (v *verifySink) meta(host int64, want []byte, what string) error {
	got, err := v.read(host, int64(len(want)))
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		i := 0
		for got[i] == want[i] {
			i++
		}
		return fmt.Errorf("%w: layout: %s at 0x%x cannot be reproduced: file differs at 0x%x", ErrUnsupported, what, host, host+int64(i))
	}
	return nil
}

func (v *verifySink) zeros(host, n int64) error {
	for n > 0 {
		k := min(n, 1<<20)
		got, err := v.read(host, k)
		if err != nil {
			return err
		}
		for i, b := range got {
			if b != 0 {
				return fmt.Errorf("%w: layout: unused host bytes are not zero at 0x%x", ErrUnsupported, host+int64(i))
			}
		}
		host += k
		n -= k
	}
	return nil
}

func (v *verifySink) data(host, guest, n int64) error { return nil }

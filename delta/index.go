package delta

import (
	"fmt"
	"io"
	"math/bits"
	"sort"
	"sync/atomic"
)

// winLen is the length of the window hashed at each indexed base block and rolled over the
// target when a match must be searched for.
const winLen = 32

// Rolling polynomial hash over winLen bytes: h = sum b[i]*hashMul^(winLen-1-i) mod 2^64.
const hashMul = 0x100000001b3

var hashMulTop = func() uint64 { // hashMul^(winLen-1)
	p := uint64(1)
	for range winLen - 1 {
		p *= hashMul
	}
	return p
}()

func hashWindow(p []byte) uint64 {
	var h uint64
	for _, c := range p[:winLen] {
		h = h*hashMul + uint64(c)
	}
	return h
}

func rollHash(h uint64, out, in byte) uint64 {
	return (h-uint64(out)*hashMulTop)*hashMul + uint64(in)
}

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

const (
	offsetBits = 40 // base offsets up to 1 TiB
	offsetMask = 1<<offsetBits - 1
	tagBits    = 64 - offsetBits
	maxPerHash = 4 // candidates kept per hash: the first ones and the latest
	maxBlocks  = 1 << 23
)

// span is a run of base bytes [start, end).
type span struct{ start, end int64 }

// index maps the hash of a small window in each aligned base block (the first winLen bytes that
// start with a non-zero byte) to the window's base offset. Slots are uint64 entries
// tag<<offsetBits | offset in an open-addressing table with a power-of-two size at most half
// full: 16 to 32 bytes per block, plus a bit filter of an eighth of that. Up to maxPerHash
// offsets are kept per hash (the first ones and the latest), so repeated blocks stay usable
// wherever the forward position is. All-zero blocks are not hashed but recorded as runs in
// zeros, so a disk's millions of identical zero blocks neither fill a probe chain nor cost a
// lookup.
type index struct {
	blockSize int64
	shift     uint
	mask      uint64
	slots     []uint64
	filter    []uint64 // one bit per filterIndex: a cheap first test before probing slots
	fshift    uint
	zeros     []span
	longest   span // the longest of zeros, once ready

	ready chan struct{}
	stop  atomic.Bool
	err   error
}

// blockSizeFor grows the requested block size until the base has at most maxBlocks blocks,
// which bounds the table to 128 MiB (and the zero runs to 64 MiB) whatever the base size.
func blockSizeFor(req int, baseSize int64) int64 {
	bs := int64(req)
	for baseSize/bs >= maxBlocks {
		bs *= 2
	}
	return bs
}

func newIndex(baseSize, blockSize int64) *index {
	nblocks := baseSize/blockSize + 1
	slots := uint64(1024)
	for slots < uint64(2*nblocks) {
		slots *= 2
	}
	// 8 filter bits per slot (16 or more per indexed window) keep false hits near 5%, at 1/8
	// of the table's memory: small enough to stay in cache when the table does not.
	fbits := slots * 8
	return &index{
		blockSize: blockSize,
		shift:     uint(64 - bits.TrailingZeros64(slots)),
		mask:      slots - 1,
		slots:     make([]uint64, slots),
		filter:    make([]uint64, fbits/64),
		fshift:    uint(64 - bits.TrailingZeros64(fbits)),
		ready:     make(chan struct{}),
	}
}

// maybe reports whether a window of hash h may be in the index (false: certainly not).
func (x *index) maybe(h uint64) bool {
	f := (h * 0x9e3779b97f4a7c15) >> x.fshift
	return x.filter[f>>6]&(1<<(f&63)) != 0
}

func (x *index) slotAndTag(h uint64) (uint64, uint64) {
	m := mix(h)
	tag := (m >> 8) & (1<<tagBits - 1)
	if tag == 0 {
		tag = 1
	}
	return m >> x.shift, tag
}

func (x *index) insert(h uint64, off int64) {
	f := (h * 0x9e3779b97f4a7c15) >> x.fshift
	x.filter[f>>6] |= 1 << (f & 63)
	i, tag := x.slotAndTag(h)
	e := tag<<offsetBits | uint64(off)
	same, last := 0, uint64(0)
	for {
		s := x.slots[i]
		if s == 0 {
			if same < maxPerHash {
				x.slots[i] = e
			} else {
				x.slots[last] = e // keep the latest occurrence in the last slot of this hash
			}
			return
		}
		if s>>offsetBits == tag {
			same++
			last = i
		}
		i = (i + 1) & x.mask
	}
}

// lookup appends the base offsets stored under h to dst.
func (x *index) lookup(h uint64, dst []int64) []int64 {
	i, tag := x.slotAndTag(h)
	for {
		s := x.slots[i]
		if s == 0 {
			return dst
		}
		if s>>offsetBits == tag {
			dst = append(dst, int64(s&offsetMask))
		}
		i = (i + 1) & x.mask
	}
}

// build reads the whole base once, in order, and fills the table and the zero runs. It stops
// early when stop is set.
func (x *index) build(base io.ReaderAt, baseSize int64) {
	defer close(x.ready)
	if baseSize > offsetMask {
		x.err = fmt.Errorf("delta: base of %d bytes is larger than the 1 TiB the index supports", baseSize)
		return
	}
	chunk := max(min(4<<20, baseSize)/x.blockSize, 1) * x.blockSize
	w := newWindow(base, baseSize, "base", int(chunk))
	for off := int64(0); off < baseSize; off += chunk {
		if x.stop.Load() {
			return
		}
		buf, err := w.at(off, int(chunk))
		if err != nil {
			x.err = err
			return
		}
		buf = buf[:min(int64(len(buf)), chunk)]
		for b := 0; b < len(buf); b += int(x.blockSize) {
			blk := buf[b:min(b+int(x.blockSize), len(buf))]
			k := leadingZeros(blk)
			if k == len(blk) {
				x.addZero(off+int64(b), off+int64(b+len(blk)))
				continue
			}
			if k+winLen > len(blk) {
				continue
			}
			x.insert(hashWindow(blk[k:]), off+int64(b+k))
		}
	}
}

func (x *index) addZero(start, end int64) {
	if n := len(x.zeros); n > 0 && x.zeros[n-1].end == start {
		x.zeros[n-1].end = end
	} else {
		x.zeros = append(x.zeros, span{start, end})
	}
	if z := x.zeros[len(x.zeros)-1]; z.end-z.start > x.longest.end-x.longest.start {
		x.longest = z
	}
}

// zeroAfter returns the first run of zero blocks that ends after off, clipped to start at off.
func (x *index) zeroAfter(off int64) (span, bool) {
	i := sort.Search(len(x.zeros), func(i int) bool { return x.zeros[i].end > off })
	if i == len(x.zeros) {
		return span{}, false
	}
	z := x.zeros[i]
	z.start = max(z.start, off)
	return z, true
}

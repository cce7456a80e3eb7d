package reflate

import (
	"encoding/binary"
	"math/bits"
)

// This file predicts tokens the way zlib's deflate.c (and GNU gzip's and Info-ZIP's, which share
// its design) chooses them: hash chains over 3-byte strings (zlib's hash, memLevel+7 bits),
// longest_match with the level's good_length/nice_length/max_chain, deflate_fast below level 4
// and deflate_slow's lazy evaluation with the TOO_FAR rule from level 4 up. The matcher sees
// its chunk's plain data with the 32 KiB before it, so matches may reach MAX_DIST (the window
// minus MIN_LOOKAHEAD) back wherever they are.

const (
	wSize    = 1 << 15 // deflate's largest window: the longest distance a stream may use
	minMatch = 3
	maxMatch = 258
	tooFar   = 4096
)

// modelCfg is what the model detects of a producer: zlib's level, windowBits and memLevel.
type modelCfg struct {
	level, wbits, memLevel int
}

// zlibConfig is one row of zlib's configuration_table.
type zlibConfig struct {
	good, lazy, nice, chain int
	fast                    bool // deflate_fast (no lazy evaluation)
}

var zlibLevels = [10]zlibConfig{
	{},
	{4, 4, 8, 4, true},
	{4, 5, 16, 8, true},
	{4, 6, 32, 32, true},
	{4, 4, 16, 16, false},
	{8, 16, 32, 32, false},
	{8, 16, 128, 128, false},
	{8, 32, 128, 256, false},
	{32, 128, 258, 1024, false},
	{32, 258, 258, 4096, false},
}

// matcher predicts the token at each token boundary. It is steered: after each boundary the
// caller tells it the token the stream really has there, and it carries on from that state, so
// a difference costs one correction and not a desynchronised rest of the stream.
type matcher struct {
	cfg zlibConfig
	// window and hash parameters (deflateInit2's windowBits and memLevel)
	wmask     int
	maxDist   int
	hashMask  int
	hashShift int

	data []byte
	end  int // the producer saw data up to here (the next restart point, else len(data))
	head []uint32
	prev []uint32
	ins  int // positions below ins are in the hash chains (or deliberately skipped)

	// lazy evaluation state: the match found at the current boundary when it was searched as
	// the position after the previous one (zlib's prev_length/prev_match with match_available).
	pendValid bool
	pendLen   int
	pendDist  int
	// the search at boundary+1 done while predicting, kept for the next boundary
	nextValid bool
	nextLen   int
	nextDist  int
}

func newMatcher(m modelCfg, data []byte) *matcher {
	hashBits := m.memLevel + 7
	w := 1 << m.wbits
	return &matcher{cfg: zlibLevels[m.level], data: data, end: len(data),
		wmask: w - 1, maxDist: w - (maxMatch + minMatch + 1), hashMask: 1<<hashBits - 1, hashShift: (hashBits + minMatch - 1) / minMatch,
		head: make([]uint32, 1<<hashBits), prev: make([]uint32, w)}
}

func (z *matcher) hash(p int) int {
	d := z.data
	return ((int(d[p])<<z.hashShift^int(d[p+1]))<<z.hashShift ^ int(d[p+2])) & z.hashMask
}

// insertTo puts positions [z.ins, q) into the hash chains; zlib inserts a position only while
// at least 3 bytes remain from it.
func (z *matcher) insertTo(q int) {
	last := z.end - minMatch
	if q > last+1 {
		q = last + 1
	}
	for p := z.ins; p < q; p++ {
		h := z.hash(p)
		z.prev[p&z.wmask] = z.head[h]
		z.head[h] = uint32(p)
	}
	if q > z.ins {
		z.ins = q
	}
}

// hashHead inserts p and returns the chain head before it (0: none, as zlib's NIL; position 0
// is never a candidate in zlib either).
func (z *matcher) hashHead(p int) int {
	if p+minMatch > z.end {
		return 0
	}
	if p < z.ins {
		// p is already in the chains (searched before as the position after a boundary).
		return int(z.prev[p&z.wmask])
	}
	z.insertTo(p)
	h := z.hash(p)
	hh := z.head[h]
	z.prev[p&z.wmask] = hh
	z.head[h] = uint32(p)
	z.ins = p + 1
	return int(hh)
}

// longestMatch is zlib's longest_match: best length > prevLen found along the chain from cur
// (or prevLen with dist 0 if none is longer).
func (z *matcher) longestMatch(p, cur, prevLen int) (int, int) {
	d := z.data
	chain := z.cfg.chain
	best, bestDist := prevLen, 0
	nice := z.cfg.nice
	avail := z.end - p
	if prevLen >= z.cfg.good {
		chain >>= 2
	}
	if nice > avail {
		nice = avail
	}
	limit := 0
	if p > z.maxDist {
		limit = p - z.maxDist
	}
	maxLen := min(maxMatch, avail)
	for {
		if best < maxLen && d[cur+best] == d[p+best] && (best == 0 || d[cur+best-1] == d[p+best-1]) && d[cur] == d[p] {
			n := matchLen(d[cur:], d[p:], maxLen)
			if n > best {
				best, bestDist = n, p-cur
				if n >= nice {
					break
				}
			}
		}
		cur = int(z.prev[cur&z.wmask])
		if cur <= limit {
			break
		}
		chain--
		if chain == 0 {
			break
		}
	}
	if best > avail {
		best = avail
	}
	return best, bestDist
}

// search is one deflate step's match search at p with zlib's prev_length = prevLen.
func (z *matcher) search(p, prevLen int) (int, int) {
	hh := z.hashHead(p)
	if hh == 0 || p-hh > z.maxDist {
		return minMatch - 1, 0
	}
	if !z.cfg.fast && prevLen >= z.cfg.lazy {
		return minMatch - 1, 0
	}
	l, d := z.longestMatch(p, hh, prevLen)
	if !z.cfg.fast && l == minMatch && d > tooFar {
		l = minMatch - 1
	}
	return l, d
}

// predict returns the token zlib would emit at boundary p.
func (z *matcher) predict(p int) token {
	z.nextValid = false
	if z.cfg.fast {
		l, d := z.search(p, minMatch-1)
		if l >= minMatch {
			return token{length: uint16(l), dist: uint16(d)}
		}
		return token{}
	}
	if !z.pendValid {
		z.pendLen, z.pendDist = z.search(p, minMatch-1)
		z.pendValid = true
	}
	if p+1 < z.end {
		z.nextLen, z.nextDist = z.search(p+1, z.pendLen)
		z.nextValid = true
	} else {
		z.nextLen = 0
	}
	if z.pendLen >= minMatch && z.nextLen <= z.pendLen {
		return token{length: uint16(z.pendLen), dist: uint16(z.pendDist)}
	}
	return token{}
}

// accept moves past the boundary at p whose real token is t.
func (z *matcher) accept(p int, t token) {
	if !t.isMatch() {
		z.pendValid = z.nextValid
		z.pendLen, z.pendDist = z.nextLen, z.nextDist
		if p+1 > z.ins {
			z.insertTo(p + 1)
		}
		return
	}
	z.pendValid = false
	end := p + int(t.length)
	if z.cfg.fast && (int(t.length) > z.cfg.lazy || z.end-end < minMatch) {
		// deflate_fast does not insert the strings inside a long match.
		if z.ins < end {
			z.ins = end
		}
		return
	}
	z.insertTo(end)
}

// reset forgets the lazy state at p (after a stored block), inserting the skipped strings.
func (z *matcher) reset(p int) {
	z.pendValid, z.nextValid = false, false
	z.insertTo(p)
}

// restart models a producer that compressed the data up to p as one piece and starts a new
// deflate stream at p primed with the preceding 32 KiB (pigz: deflateSetDictionary puts every
// string of it in fresh hash chains); the new piece ends at end.
func (z *matcher) restart(p, end int) {
	z.pendValid, z.nextValid = false, false
	z.end = end
	clear(z.head)
	clear(z.prev)
	z.ins = max(0, p-z.wmask-1)
	z.insertTo(p)
}

// matchLen is the length of the common prefix of a and b, at most max (<= len(a), len(b)).
func matchLen(a, b []byte, max int) int {
	n := 0
	for n+8 <= max {
		if x := binary.LittleEndian.Uint64(a[n:]) ^ binary.LittleEndian.Uint64(b[n:]); x != 0 {
			return n + bits.TrailingZeros64(x)/8
		}
		n += 8
	}
	for n < max && a[n] == b[n] {
		n++
	}
	return n
}

const maxRankWalk = 4096

// candidates calls f with each earlier position in p's hash chain, nearest first, that
// matches at least length bytes, until f returns false. The walk stops before positions whose
// chain link may already be reused by newer strings.
func (z *matcher) candidates(p, length int, f func(q int) bool) {
	if p+minMatch > z.end || p >= z.ins || p+length > len(z.data) {
		return
	}
	d := z.data
	q := int(z.prev[p&z.wmask])
	for steps := 0; q > 0 && q < p && p-q <= z.wmask-1 && steps < maxRankWalk; steps++ {
		n := 0
		for n < length && d[q+n] == d[p+n] {
			n++
		}
		if n == length && !f(q) {
			return
		}
		next := int(z.prev[q&z.wmask])
		if next >= q {
			return
		}
		q = next
	}
}

// rank returns how many candidates of at least length bytes come before the one at dist in
// p's hash chain, or -1 if it is not there. Corrections store a match this way: most encoders
// pick one of the nearest candidates, so the rank is small where the distance is not.
func (z *matcher) rank(p, length, dist int) int {
	r, found := 0, -1
	z.candidates(p, length, func(q int) bool {
		if p-q == dist {
			found = r
			return false
		}
		r++
		return true
	})
	return found
}

// byRank is the distance of the candidate of at least length bytes with this rank, or 0.
func (z *matcher) byRank(p, length, rank int) int {
	r, dist := 0, 0
	z.candidates(p, length, func(q int) bool {
		if r == rank {
			dist = p - q
			return false
		}
		r++
		return true
	})
	return dist
}

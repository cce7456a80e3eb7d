package reflate

import (
	"encoding/binary"
	"sync"
)

// This file predicts tokens the way zlib-ng 2.2.2 chooses them: deflate_quick (level 1),
// deflate_fast (2), deflate_medium (3-6) and deflate_slow (7-9, level 9 with its rolling hash
// and longest_match_slow). Fedora's zlib is zlib-ng, and qemu-img deflates VMDK grains and
// qcow2 clusters at level 6. deflate_medium's differences from zlib's deflate: a 16-bit
// multiplicative hash of 4 bytes,
// matches of at least 4 bytes, a match at the position after the current match searched
// before the current one is written, and "fizzle": when that next match extends backwards
// over all but at most one byte of the current one, the next match takes its place. The
// window is modelled as zlib-ng keeps it (2*w_size bytes, slid by w_size when the position
// reaches w_size+MAX_DIST), because which chain entries survive a slide, MAX_DIST and when the
// search for the next match is skipped depend on it. The matcher is steered like the zlib
// one: where the stream's token differs, the next match is dropped and the model carries on
// after the stream's token.

const (
	ngHashBits     = 16
	ngMinMatch     = 4 // WANT_MIN_MATCH
	ngMinLookahead = maxMatch + minMatch + 1
	ngEarlyExit    = 5 // below this level longest_match stops at the first non-improving candidate
)

// ngConfig is one row of zlib-ng's configuration_table.
type ngConfig struct {
	good, lazy, nice, chain int
	strategy                int
}

const (
	ngQuick = iota
	ngFast
	ngMedium
	ngSlow
)

var ngLevels = [10]ngConfig{
	1: {0, 0, 0, 0, ngQuick},
	2: {4, 4, 8, 4, ngFast},
	3: {4, 6, 16, 6, ngMedium},
	4: {4, 12, 32, 24, ngMedium},
	5: {8, 16, 32, 32, ngMedium},
	6: {8, 16, 128, 128, ngMedium},
	7: {8, 32, 128, 256, ngSlow},
	8: {32, 128, 258, 1024, ngSlow},
	9: {32, 258, 258, 4096, ngSlow},
}

// Level 9 (max_chain above 1024) hashes differently: zlib's rolling 3-byte hash over 15 bits,
// kept across insertions, and longest_match_slow, which also walks the chains of the
// match's later strings.
const (
	ngRollShift = 5
	ngRollMask  = 1<<15 - 1
)

// ngMatch is deflate_medium's struct match, in absolute plain positions.
type ngMatch struct {
	strstart, matchStart, length, orgstart int
}

type ngMatcher struct {
	level   int
	cfg     ngConfig
	data    []byte
	wsize   int
	wmask   int
	maxDist int
	head    []int32
	prev    []int32
	base    int // plain position of window[0]; chain entries at or below it read as zlib-ng's 0
	filled  int // plain position where the window's data ends
	insHi   int // steering inserts no position below this again

	next      ngMatch
	nextValid bool
	resumeAt  int // after steering: the position whose own chain entry is not its match

	// deflate_slow's lazy evaluation state and zlib-ng's s->match_start
	prevLength     int
	matchAvailable bool
	matchStart     int
	strstart       int // deflate_slow's position (one past the pending literal or match)

	roll bool // level 9: rolling hash and longest_match_slow
	// capInsert: deflate_medium of later zlib-ng releases (the cap is not in 2.2.2) puts only
	// the last string of a match longer than 16*max_lazy into the chains.
	capInsert bool
	insH      uint32 // the rolling hash (s->ins_h)
	// the prediction made at pos, its token and the match it came from
	predPos  int
	predOK   bool
	predCur  ngMatch
	predTok  token
	predNext bool
}

// ngPool keeps matchers (their 384 KiB of hash chains) between streams: a VMDK holds
// thousands of 64 KiB grains, each a stream of its own.
var ngPool sync.Pool

// newNGMatcher returns a matcher in its initial state, its chains empty; release gives it
// back to the pool.
func newNGMatcher(level, wbits int, data []byte) *ngMatcher {
	w := 1 << wbits
	var head, prev []int32
	if old, ok := ngPool.Get().(*ngMatcher); ok {
		head, prev = old.head, old.prev[:cap(old.prev)]
		clear(head)
		if len(prev) < w {
			prev = make([]int32, w)
		} else {
			prev = prev[:w]
			clear(prev)
		}
	} else {
		head, prev = make([]int32, 1<<ngHashBits), make([]int32, w)
	}
	return &ngMatcher{level: level, cfg: ngLevels[level], data: data, wsize: w, wmask: w - 1,
		maxDist: w - ngMinLookahead, head: head, prev: prev, predPos: -1, resumeAt: -1,
		roll: ngLevels[level].chain > 1024}
}

// release puts m's chains back in the pool; m is not used after.
func (m *ngMatcher) release() {
	m.data = nil
	ngPool.Put(m)
}

// roll3 is the rolling hash of the 3 bytes at p, as longest_match_slow computes it from 0.
func (m *ngMatcher) roll3(p int) int {
	h := uint32(m.at(p))
	h = (h<<ngRollShift ^ uint32(m.at(p+1))) & ngRollMask
	return int((h<<ngRollShift ^ uint32(m.at(p+2))) & ngRollMask)
}

// ent reads a chain entry as zlib-ng's window offsets compare: entries at or below the
// window start are its 0.
func (m *ngMatcher) ent(x int32) int {
	return max(int(x), m.base)
}

func (m *ngMatcher) hash(p int) int {
	var v uint32
	if p+4 <= len(m.data) {
		v = binary.LittleEndian.Uint32(m.data[p:])
	} else if p < len(m.data) {
		var b [4]byte
		copy(b[:], m.data[p:])
		v = binary.LittleEndian.Uint32(b[:])
	}
	return int((v * 2654435761) >> (32 - ngHashBits))
}

// quickInsert is quick_insert_string: it returns the previous head of p's chain. At the
// position steering resumed at, already inserted, it returns the entry before it.
func (m *ngMatcher) quickInsert(p int) int {
	var h int
	if m.roll {
		m.insH = (m.insH<<ngRollShift ^ uint32(m.at(p+2))) & ngRollMask
		h = int(m.insH)
	} else {
		h = m.hash(p)
	}
	hd := int(m.head[h])
	if p == m.resumeAt {
		m.resumeAt = -1
		if hd == p {
			return int(m.prev[p&m.wmask])
		}
	}
	if hd != p {
		m.prev[p&m.wmask] = int32(hd)
		m.head[h] = int32(p)
	}
	m.insHi = max(m.insHi, p+1)
	return hd
}

func (m *ngMatcher) insert(p, count int) {
	if d := m.data; !m.roll && (m.resumeAt < p || m.resumeAt >= p+count) && p >= 0 && p+count+3 <= len(d) {
		// quickInsert's common case in a loop: the 4 bytes hashed all lie in the data
		head, prev := m.head, m.prev
		for q := p; q < p+count; q++ {
			h := (binary.LittleEndian.Uint32(d[q:]) * 2654435761) >> (32 - ngHashBits)
			if hd := head[h]; int(hd) != q {
				prev[q&m.wmask] = hd
				head[h] = int32(q)
			}
		}
		m.insHi = max(m.insHi, p+count)
		return
	}
	for q := p; q < p+count; q++ {
		m.quickInsert(q)
	}
}

// fill is fill_window when the lookahead runs short: slide if the position is far enough into
// the window, read what fits, and re-insert the string before the position.
func (m *ngMatcher) fill(p int) {
	if p-m.base >= m.wsize+m.maxDist {
		m.base += m.wsize
	}
	if m.filled >= len(m.data) {
		return
	}
	m.filled = min(len(m.data), m.base+2*m.wsize)
	if m.filled-p >= minMatch {
		if m.roll {
			m.insH = (uint32(m.at(p))<<ngRollShift ^ uint32(m.at(p+1))) & ngRollMask
		} else if p-m.base >= 1 {
			m.quickInsert(p - 1)
		}
	}
}

// valid reports whether a chain entry is a position (zlib-ng's entries are window offsets, 0
// meaning none; a slide turns those below the new window into 0).
func (m *ngMatcher) valid(q int) bool { return q > m.base }

func (m *ngMatcher) at(i int) byte {
	if i < len(m.data) {
		return m.data[i]
	}
	return 0
}

func (m *ngMatcher) eq(a, b, n int) bool {
	if d := m.data; a >= 0 && b >= 0 && a+8 <= len(d) && b+8 <= len(d) {
		switch n {
		case 2:
			return binary.LittleEndian.Uint16(d[a:]) == binary.LittleEndian.Uint16(d[b:])
		case 4:
			return binary.LittleEndian.Uint32(d[a:]) == binary.LittleEndian.Uint32(d[b:])
		case 8:
			return binary.LittleEndian.Uint64(d[a:]) == binary.LittleEndian.Uint64(d[b:])
		}
	}
	for k := 0; k < n; k++ {
		if m.at(a+k) != m.at(b+k) {
			return false
		}
	}
	return true
}

// longest is longest_match (match_tpl.h, not the _slow variant) with prev_length 0: it returns
// the best length (2 when nothing of 3 or more was found) and its match start.
func (m *ngMatcher) longest(p, cur, lookahead int) (int, int) {
	best, start := minMatch-1, 0
	if m.prevLength > 0 {
		best = m.prevLength
	}
	// The candidate must match the width bytes at offset (the end of the best match so far)
	// and at the start. Where 8 bytes can be read at both, they are compared as words: the
	// stream's bytes (ps, pe) loaded once, the candidate's masked to width.
	d := m.data
	offset, width := 0, 0
	var ps, pe, mask uint64
	words := false
	setOffset := func() {
		offset, width, mask = best-1, 2, 0xffff
		if best >= 8 {
			offset, width, mask = best-7, 8, ^uint64(0)
		} else if best >= 4 {
			offset, width, mask = best-3, 4, 0xffffffff
		}
		if words = p+offset+8 <= len(d); words {
			ps = binary.LittleEndian.Uint64(d[p:]) & mask
			pe = binary.LittleEndian.Uint64(d[p+offset:]) & mask
		}
	}
	setOffset()
	chain := m.cfg.chain
	if best >= m.cfg.good {
		chain >>= 2
	}
	limit := m.base + max(0, p-m.base-m.maxDist)
	early := m.level < ngEarlyExit
	end := min(len(d), p+maxMatch)
	for {
		if cur >= p {
			break
		}
		for {
			if words && cur >= 0 && cur+offset+8 <= len(d) {
				if binary.LittleEndian.Uint64(d[cur+offset:])&mask == pe && binary.LittleEndian.Uint64(d[cur:])&mask == ps {
					break
				}
			} else if m.eq(cur+offset, p+offset, width) && m.eq(cur, p, width) {
				break
			}
			chain--
			if chain == 0 {
				return best, start
			}
			if cur = int(m.prev[cur&m.wmask]); cur <= limit {
				return best, start
			}
		}
		l := 2
		if n := min(end-p, len(d)-cur); n > l { // a chain entry may point forward after steering
			l += matchLen(d[cur+l:], d[p+l:], n-l)
		}
		if l > best {
			start = cur
			m.matchStart = cur
			if l > lookahead {
				return lookahead, start
			}
			best = l
			if best >= m.cfg.nice {
				return best, start
			}
			setOffset()
		} else if early {
			break
		}
		chain--
		if chain == 0 {
			return best, start
		}
		if cur = int(m.prev[cur&m.wmask]); cur <= limit {
			return best, start
		}
	}
	return best, start
}

// find is the search for the match at p (current or next): a literal (length 1) unless a
// match of at least 4 bytes is found.
func (m *ngMatcher) find(p, hh, lookahead int) ngMatch {
	x := ngMatch{strstart: p, orgstart: p, length: 1}
	if d := p - hh; m.valid(hh) && d > 0 && d <= m.maxDist {
		l, s := m.longest(p, hh, lookahead)
		if l >= ngMinMatch && s < p {
			x.length, x.matchStart = l, s
		}
	}
	return x
}

// insertMatch is insert_match: the strings inside a match go into the hash chains.
func (m *ngMatcher) insertMatch(c ngMatch, lookahead int) {
	if lookahead <= c.length+ngMinMatch {
		return
	}
	s, l := c.strstart+1, c.length-1
	if l < ngMinMatch-1 {
		if l > 0 && s >= c.orgstart {
			if s+l-1 >= c.orgstart {
				m.insert(s, l)
			} else {
				m.insert(s, c.orgstart-s+1)
			}
		}
		return
	}
	if m.capInsert && c.length > 16*m.cfg.lazy {
		m.quickInsert(c.strstart + c.length - 1)
		return
	}
	if s >= c.orgstart {
		if s+l-1 >= c.orgstart {
			m.insert(s, l)
		} else {
			m.insert(s, c.orgstart-s+1)
		}
	} else if c.orgstart < s+l {
		m.insert(c.orgstart, s+l-c.orgstart)
	}
}

// fizzle is fizzle_matches: move the next match back over the current one where the data
// allows, taking it over when at most one byte of the current match is left.
func (m *ngMatcher) fizzle(cur, nx *ngMatch) {
	if cur.length <= 1 || cur.length > 1+nx.matchStart-m.base || cur.length > 1+nx.strstart-m.base {
		return
	}
	if m.data[nx.matchStart-cur.length+1] != m.data[nx.strstart-cur.length+1] {
		return
	}
	c, n := *cur, *nx
	limit := m.base + max(0, nx.strstart-m.base-m.maxDist)
	changed := 0
	for m.data[n.matchStart-1] == m.data[n.strstart-1] {
		if c.length < 1 || n.strstart <= limit || n.length >= 256 || n.matchStart-m.base <= 1 {
			break
		}
		n.strstart--
		n.matchStart--
		n.length++
		c.length--
		changed++
	}
	if changed == 0 || c.length > 1 || n.length == 2 {
		return
	}
	n.orgstart++
	*cur, *nx = c, n
}

// iterate is one turn of deflate_medium's loop at p: it returns the match it writes (length
// 0: nothing, below 4: that many literals).
func (m *ngMatcher) iterate(p int) ngMatch {
	if m.filled-p < ngMinLookahead {
		m.fill(p)
		m.nextValid = false
	}
	lookahead := m.filled - p
	early := m.level < ngEarlyExit
	var cur ngMatch
	if !early && m.nextValid {
		cur = m.next
		m.nextValid = false
	} else {
		hh := 0
		if lookahead >= ngMinMatch {
			hh = m.quickInsert(p)
		}
		cur = m.find(p, hh, lookahead)
	}
	m.insertMatch(cur, lookahead)
	m.nextValid = false
	if q := cur.strstart + cur.length; !early && lookahead > ngMinLookahead && q-m.base < 2*m.wsize-ngMinLookahead {
		hh := m.quickInsert(q)
		nx := m.find(q, hh, lookahead)
		if nx.length >= ngMinMatch {
			m.fizzle(&cur, &nx)
		}
		m.next, m.nextValid = nx, true
	}
	return cur
}

// predict returns the token zlib-ng writes at p, a literal where the model's match would
// not be a valid one (chain entries can point forward after steering or ring overwrites).
func (m *ngMatcher) predict(p int) token {
	t := m.predict1(p)
	if t.isMatch() && (t.dist == 0 || int(t.dist) > p || int(t.dist) > wSize || p+int(t.length) > len(m.data) || t.length < minMatch) {
		t = token{}
		m.predTok = t
	}
	return t
}

func (m *ngMatcher) predict1(p int) token {
	if m.predOK && m.predPos == p {
		return m.predTok
	}
	switch m.cfg.strategy {
	case ngQuick:
		t := m.iterateQuick(p)
		m.predPos, m.predOK, m.predTok = p, true, t
		return t
	case ngFast:
		t := m.iterateFast(p)
		m.predPos, m.predOK, m.predTok = p, true, t
		return t
	case ngSlow:
		t := m.iterateSlow(p)
		m.predPos, m.predOK, m.predTok = p, true, t
		return t
	}
	for {
		c := m.iterate(p)
		if c.length == 0 {
			continue // the next match took the current one over whole
		}
		t := token{}
		if c.length >= ngMinMatch {
			t = token{length: uint16(c.length), dist: uint16(p - c.matchStart)}
		}
		m.predPos, m.predOK, m.predCur, m.predTok, m.predNext = p, true, c, t, m.nextValid
		return t
	}
}

// accept moves past the stream's token t at p. A literal of a predicted multi-literal run
// (not written by zlib-ng's medium strategy, whose literals are single) keeps the state.
func (m *ngMatcher) accept(p int, t token) {
	if m.predOK && m.predPos == p && t == m.predTok {
		m.predOK = false
		return
	}
	m.predOK = false
	// Steer: zlib-ng wrote something else here; drop the next match (the lazy state), put
	// the strings of the stream's match into the chains and carry on after it.
	m.nextValid = false
	m.prevLength, m.matchAvailable = 0, false
	l := max(1, int(t.length))
	if t.isMatch() && m.filled-p > l+ngMinMatch {
		for q := max(p+1, m.insHi); q < p+l; q++ {
			m.quickInsert(q)
		}
	}
	m.strstart = p + l
	if m.insHi > p+l {
		m.resumeAt = p + l
	}
}

// iterateQuick is one turn of deflate_quick's loop at p (level 1): the chain's head only,
// compared whatever its distance within MAX_DIST (an empty head is window[0]), no strings of
// a match inserted.
func (m *ngMatcher) iterateQuick(p int) token {
	if m.filled-p < ngMinLookahead {
		m.fill(p)
	}
	lookahead := m.filled - p
	if lookahead < ngMinMatch {
		return token{}
	}
	hh := m.quickInsert(p)
	if !m.valid(hh) {
		hh = m.base
	}
	if d := p - hh; d > 0 && d <= m.maxDist {
		l := 0
		for p+l < len(m.data) && l < maxMatch && m.data[hh+l] == m.data[p+l] {
			l++
		}
		if l >= ngMinMatch {
			return token{length: uint16(min(l, lookahead)), dist: uint16(d)}
		}
	}
	return token{}
}

// iterateFast is one turn of deflate_fast's loop at p (level 2): a match of 4 or more from
// the chain's head, else a literal; short matches' strings go into the chains.
func (m *ngMatcher) iterateFast(p int) token {
	if m.filled-p < ngMinLookahead {
		m.fill(p)
	}
	lookahead := m.filled - p
	l := 0
	if lookahead >= ngMinMatch {
		hh := m.quickInsert(p)
		if d := p - hh; m.valid(hh) && d > 0 && d <= m.maxDist {
			l, _ = m.longest(p, hh, lookahead)
		}
	}
	if l < ngMinMatch {
		return token{}
	}
	if m.matchStart >= p {
		return token{}
	}
	t := token{length: uint16(l), dist: uint16(p - m.matchStart)}
	if l <= m.cfg.lazy && lookahead-l >= ngMinMatch {
		m.insert(p+1, l-1)
	} else {
		m.quickInsert(p + l - 1)
	}
	return t
}

// iterateSlow runs deflate_slow's loop (levels 7 and 8) until it writes the token at p:
// lazy evaluation, a match at the previous position written when the one here is no longer.
func (m *ngMatcher) iterateSlow(p int) token {
	if m.strstart != p+1 || !m.matchAvailable {
		// a fresh start at p (the beginning, or after a token the model did not predict)
		m.strstart, m.prevLength, m.matchAvailable = p, 0, false
	}
	for {
		ss := m.strstart
		if m.filled-ss < ngMinLookahead {
			if ss-m.base >= m.wsize+m.maxDist && m.matchStart-m.base < m.wsize {
				m.prevLength = 0 // fill_window drops a match that the slide takes away
			}
			m.fill(ss)
		}
		lookahead := m.filled - ss
		hh := 0
		if lookahead >= ngMinMatch {
			hh = m.quickInsert(ss)
		}
		prevMatch := m.matchStart
		ml := minMatch - 1
		if d := ss - hh; d <= m.maxDist && d > 0 && m.prevLength < m.cfg.lazy && m.valid(hh) {
			if m.roll {
				ml = m.longestSlow(ss, hh, lookahead)
			} else {
				ml, _ = m.longest(ss, hh, lookahead)
			}
		}
		switch {
		case m.prevLength >= minMatch && ml <= m.prevLength:
			pl := m.prevLength
			t := token{length: uint16(pl), dist: uint16(max(0, ss-1-prevMatch))}
			maxInsert := ss + lookahead - minMatch
			if maxInsert > ss {
				m.insert(ss+1, min(pl-2, maxInsert-ss))
			}
			m.prevLength, m.matchAvailable = 0, false
			m.strstart = ss + pl - 1
			return t
		case m.matchAvailable:
			m.prevLength = ml
			m.strstart = ss + 1
			return token{}
		default:
			m.prevLength, m.matchAvailable = ml, true
			m.strstart = ss + 1
		}
	}
}

// longestSlow is longest_match_slow (level 9): it starts from the most distant of the chains
// of the strings inside the lazy match already found, and after each better match jumps to
// the most distant chain among the match's strings (or of its last 3 bytes).
func (m *ngMatcher) longestSlow(p, cur, lookahead int) int {
	best := minMatch - 1
	if m.prevLength > 0 {
		best = m.prevLength
	}
	offset, width := 0, 0
	setOffset := func() {
		offset, width = best-1, 2
		if best >= 8 {
			offset, width = best-7, 8
		} else if best >= 4 {
			offset, width = best-3, 4
		}
	}
	setOffset()
	chain := m.cfg.chain
	if best >= m.cfg.good {
		chain >>= 2
	}
	limitBase := m.base + max(0, p-m.base-m.maxDist)
	limit := limitBase
	mo := 0 // match_offset: cur is a chain entry of the string at p+mo
	brk := func() int { return min(best, lookahead) }
	if best >= minMatch {
		for i := 3; i <= best; i++ {
			if pos := m.ent(m.head[m.roll3(p+i-2)]); pos < cur {
				mo, cur = i-2, pos
			}
		}
		limit = limitBase + mo
		if cur <= limit {
			return brk()
		}
	}
	for {
		if cur >= p {
			break
		}
		c := cur - mo
		for !(m.eq(c+offset, p+offset, width) && m.eq(c, p, width)) {
			chain--
			if chain == 0 {
				return best
			}
			if cur = m.ent(m.prev[cur&m.wmask]); cur <= limit {
				return best
			}
			c = cur - mo
		}
		l := 2
		if n := min(len(m.data), p+maxMatch, len(m.data)+p-c) - p; n > l {
			l += matchLen(m.data[c+l:], m.data[p+l:], n-l)
		}
		if l > best {
			ms := c
			m.matchStart = ms
			if l > lookahead {
				return lookahead
			}
			best = l
			if best >= m.cfg.nice {
				return best
			}
			setOffset()
			if l > minMatch && ms+l < p {
				cur = ms
				mo = 0
				next := cur
				for i := 0; i <= l-minMatch; i++ {
					if pos := m.ent(m.prev[(cur+i)&m.wmask]); pos < next {
						if pos <= limitBase+i {
							return brk()
						}
						next, mo = pos, i
					}
				}
				cur = next
				if pos := m.ent(m.head[m.roll3(p+l-(minMatch+1))]); pos < cur {
					mo = l - (minMatch + 1)
					if pos <= limitBase+mo {
						return brk()
					}
					cur = pos
				}
				limit = limitBase + mo
				continue
			}
		}
		chain--
		if chain == 0 {
			return best
		}
		if cur = m.ent(m.prev[cur&m.wmask]); cur <= limit {
			return best
		}
	}
	return best
}

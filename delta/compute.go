package delta

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Options tune Compute.
type Options struct {
	// BlockSize is the granularity at which the base is indexed (default 4096 if 0). It only
	// matters when an insertion or deletion loses the diagonal: a match is found again within
	// about one block, and extended back byte by byte. The index costs 16 to 32 bytes per block
	// for its table, 2 to 4 for its filter and at most 8 for runs of zero blocks (a 10 GiB base
	// at 4 KiB blocks: 64 + 8 + at most 21 MiB). Compute doubles the block size for bases of
	// more than 8 Mi blocks, so the index never exceeds about 210 MiB.
	BlockSize int
	// AnyOrder lets copies read the base in any order, as content moved around needs (files
	// laid out in another order, as in a squashfs of a disk's root tree). Such a delta is applied
	// with PatchAt, which needs random access to the base; the default delta streams (Patch).
	AnyOrder bool
}

// Stats describe a computed delta.
type Stats struct {
	TargetSize, CopyBytes, LiteralBytes int64
	Copies, Literals                    int
	DeltaSize                           int64 // bytes written to the delta, header and END included
}

const (
	defaultBlockSize = 4096
	minBlockSize     = 2 * winLen
	maxBlockSize     = 16 << 20

	// resyncLen equal bytes end an in-place edit: the diagonal resumes there.
	resyncLen = 32
	// resyncSpan is how far past a mismatch the same diagonal is scanned for the edit's end
	// before the rolling-hash search takes over.
	resyncSpan = 16 << 10
	// resyncNonZero non-zero bytes in such a run confirm the diagonal (see resync).
	resyncNonZero = 8
	// minAnchor is the shortest match the hash search accepts; farAnchor the shortest it
	// accepts more than farJump bytes away from where the current diagonal points, so that a
	// chance match far ahead does not make the base behind it unusable.
	minAnchor = 64
	farJump   = 1 << 20
	farAnchor = 4096
	// farLookahead is how much further the search looks for a near match before it takes a
	// far one (see search).
	farLookahead = 4 << 20
	// rankSpan is how far candidates are compared forward to pick the best one.
	rankSpan = 64 << 10
	// anyOrderEdit is the longest in-place edit an any-order delta skips by resync; past it,
	// the rolling-hash search looks for the bytes elsewhere in the base (a small file that took
	// the place of another).
	anyOrderEdit = 512
	// anyOrderLookBack is how far before the end of the last copy an any-order search starts.
	anyOrderLookBack = 1024
	// minZeroRun is the shortest zero run in a literal that is worth a COPY from a base zero run.
	minZeroRun = 512

	mainBuf  = 1 << 20
	auxBuf   = 256 << 10
	probeBuf = 16 << 10
)

// Compute writes a delta that turns base into target. Every COPY it emits reads the base strictly
// forward (each copy's offset >= the end of the previous copy), so the delta can be applied while
// the base is read once as a stream (see Patch). Memory stays bounded: an index of 18 to 36
// bytes per base block plus runs of zero blocks, and fixed-size read buffers (about 7 MiB),
// never the whole file.
//
// Where target and base agree along the current diagonal (target offset - base offset) they are
// compared a megabyte at a time; an in-place edit is skipped by scanning ahead on the same
// diagonal; only when the diagonal is lost does a rolling hash over the target look for a new
// match in the base index (built concurrently while the diagonal is followed). Every match is
// extended forward and backward byte by byte, so literals hold only bytes that really differ.
func Compute(base io.ReaderAt, baseSize int64, target io.ReaderAt, targetSize int64, w io.Writer, opt Options) (Stats, error) {
	st := Stats{TargetSize: targetSize}
	if baseSize < 0 || targetSize < 0 {
		return st, fmt.Errorf("delta: negative size (base %d, target %d)", baseSize, targetSize)
	}
	bsReq := opt.BlockSize
	if bsReq == 0 {
		bsReq = defaultBlockSize
	}
	if bsReq < minBlockSize || bsReq > maxBlockSize {
		return st, fmt.Errorf("delta: block size %d out of range [%d, %d]", bsReq, minBlockSize, maxBlockSize)
	}
	e := &engine{
		B:  baseSize,
		T:  targetSize,
		tw: newWindow(target, targetSize, "target", mainBuf),
		bw: newWindow(base, baseSize, "base", mainBuf),
		ta: newWindow(target, targetSize, "target", auxBuf),
		ba: newWindow(base, baseSize, "base", auxBuf),
		tl: newWindow(target, targetSize, "target", auxBuf),
		tg: newWindow(target, targetSize, "target", auxBuf),
		bg: newWindow(base, baseSize, "base", auxBuf),

		anyOrder: opt.AnyOrder,
	}
	e.pt, e.pb = e.ta, e.ba
	if opt.AnyOrder {
		// Candidates lie anywhere in the base: a 256 KiB refill per candidate checked would
		// read the base many times over (100x the time on a 400 MB disk whose files moved).
		e.pt = newWindow(target, targetSize, "target", probeBuf)
		e.pb = newWindow(base, baseSize, "base", probeBuf)
	}
	em, err := newEmitter(w, e.tl, &st)
	if err != nil {
		return st, err
	}
	e.em = em
	if baseSize > 0 {
		e.idx = newIndex(baseSize, blockSizeFor(bsReq, baseSize))
		go e.idx.build(base, baseSize)
		defer func() {
			e.idx.stop.Store(true)
			<-e.idx.ready
		}()
	}
	if err := e.run(); err != nil {
		return st, err
	}
	return st, e.em.end()
}

type engine struct {
	B, T   int64
	tw, bw *window // follow the diagonal; tw also feeds the hash search
	ta, ba *window // candidate checks, backward extension, zero runs
	pt, pb *window // candidate checks and backward extension: ta, ba or small ones (anyOrder)
	tl     *window // literal bytes
	tg, bg *window // gaps before a match
	idx    *index
	em     *emitter
	cands  []int64
	// anyOrder: no copy is bound to start after the previous one (Options.AnyOrder).
	anyOrder bool
}

// floor is the lowest base offset the next copy may read, given the end of the last copy.
func (e *engine) floor(end int64) int64 {
	if e.anyOrder {
		return 0
	}
	return end
}

var errNoMatch = errors.New("no match")

func (e *engine) run() error {
	// t: next target byte to cover; lit: start of the pending literal; b: end of the last copy
	// (no copy may start before it); d: the current diagonal, base offset minus target offset.
	var t, lit, b, d int64
	for t < e.T {
		if bp := t + d; bp < e.B {
			n, err := e.extend(e.tw, e.bw, t, bp, min(e.T-t, e.B-bp))
			if err != nil {
				return err
			}
			if n >= resyncLen || (n > 12 && t+n == e.T) {
				if err := e.flushLiteral(lit, t, b, bp); err != nil {
					return err
				}
				if err := e.em.copy(bp, n); err != nil {
					return err
				}
				t += n
				lit, b = t, e.floor(t+d)
				continue
			}
			u, err := e.resync(t, d)
			if err != nil {
				return err
			}
			if e.anyOrder && u-t > anyOrderEdit {
				u = t // a longer edit may be content that moved here: search it first
			}
			if u > t {
				t = u
				continue
			}
		}
		at, ab, err := e.search(t, lit, b, d)
		if err == errNoMatch {
			break
		}
		if err != nil {
			return err
		}
		t, d = at, ab-at
		if b, err = e.fillGap(lit, t, b, ab, d); err != nil {
			return err
		}
		b = e.floor(b)
		lit = t
	}
	// No match ahead: the rest is a gap on the last diagonal (nothing after it to protect).
	_, err := e.fillGap(lit, e.T, b, e.B, d)
	return err
}

// fillGap emits target[lo:hi], the gap before a match found by the hash search (or the tail),
// whose copies must come from base[bLo:bHi]. Runs of resyncLen equal bytes on diagonal d (the
// new match's) are copied, zeros included: this is the backward extension of the match
// continued past isolated edits. Other bytes go to flushLiteral. Returns the new end of the
// last copy.
func (e *engine) fillGap(lo, hi, bLo, bHi, d int64) (int64, error) {
	cur, bcur := lo, bLo
	for p, end := max(lo, bLo-d), min(hi, bHi-d); p < end; {
		u, v, err := e.nextEqualRun(p, end, d)
		if err != nil {
			return bcur, err
		}
		if u < 0 {
			break
		}
		if err := e.flushLiteral(cur, u, bcur, u+d); err != nil {
			return bcur, err
		}
		if err := e.em.copy(u+d, v-u); err != nil {
			return bcur, err
		}
		cur, bcur, p = v, v+d, v
	}
	return bcur, e.flushLiteral(cur, hi, bcur, bHi)
}

// nextEqualRun finds the first run of at least resyncLen bytes in [p, end) where target and
// base agree on diagonal d, or -1.
func (e *engine) nextEqualRun(p, end, d int64) (int64, int64, error) {
	runStart, run := int64(-1), int64(0)
	for p < end {
		ts, err := e.tg.at(p, 1)
		if err != nil {
			return -1, -1, err
		}
		bs, err := e.bg.at(p+d, 1)
		if err != nil {
			return -1, -1, err
		}
		m := min(int64(len(ts)), int64(len(bs)), end-p)
		ts, bs = ts[:m], bs[:m]
		for i := 0; i < len(ts); {
			if ts[i] == bs[i] {
				k := commonPrefix(ts[i:], bs[i:])
				if run == 0 {
					runStart = p + int64(i)
				}
				run += int64(k)
				i += k
				continue
			}
			if run >= resyncLen {
				return runStart, p + int64(i), nil
			}
			run = 0
			i++
		}
		p += m
	}
	if run >= resyncLen {
		return runStart, end, nil
	}
	return -1, -1, nil
}

// extend returns how many bytes target[t:] and base[bp:] share, up to limit.
func (e *engine) extend(tw, bw *window, t, bp, limit int64) (int64, error) {
	var n int64
	for n < limit {
		ts, err := tw.at(t+n, 1)
		if err != nil {
			return n, err
		}
		bs, err := bw.at(bp+n, 1)
		if err != nil {
			return n, err
		}
		m := min(int64(len(ts)), int64(len(bs)), limit-n)
		if m == 0 {
			break
		}
		k := int64(commonPrefix(ts[:m], bs[:m]))
		n += k
		if k < m {
			break
		}
	}
	return n, nil
}

// extendBack returns how many bytes before target offset t and base offset bp are equal, not
// going below tLo and bLo.
func (e *engine) extendBack(t, bp, tLo, bLo int64) (int64, error) {
	limit := min(t-tLo, bp-bLo)
	var n int64
	for n < limit {
		ts, err := e.pt.before(t-n, 1)
		if err != nil {
			return n, err
		}
		bs, err := e.pb.before(bp-n, 1)
		if err != nil {
			return n, err
		}
		m := min(int64(len(ts)), int64(len(bs)), limit-n)
		k := int64(commonSuffix(ts[int64(len(ts))-m:], bs[int64(len(bs))-m:]))
		n += k
		if k < m {
			break
		}
	}
	return n, nil
}

// resync looks for the end of an in-place edit starting at t: the first run of resyncLen bytes
// equal on the same diagonal, within resyncSpan. The diagonal only counts as found again if a
// run of equal bytes with resyncNonZero non-zero bytes follows within the span: after an insertion, the old
// diagonal still agrees wherever both files happen to hold zeros, and following it there would
// move the base position past the data the target needs next. Returns t if not found.
func (e *engine) resync(t, d int64) (int64, error) {
	limit := min(int64(resyncSpan+resyncLen), e.T-t, e.B-(t+d))
	if limit < resyncLen {
		return t, nil
	}
	ts, err := e.tw.at(t, int(limit))
	if err != nil {
		return t, err
	}
	bs, err := e.bw.at(t+d, int(limit))
	if err != nil {
		return t, err
	}
	ts, bs = ts[:limit], bs[:limit]
	first, run, nonzero := -1, 0, 0
	for i := range ts {
		c := ts[i]
		if c != bs[i] {
			run, nonzero = 0, 0
			continue
		}
		run++
		if c != 0 {
			nonzero++
		}
		if run >= resyncLen {
			if first < 0 {
				first = i - run + 1
			}
			if nonzero >= resyncNonZero {
				return t + int64(first), nil
			}
		}
	}
	return t, nil
}

// search rolls a hash over the target from t for a window that the base index knows at a base
// offset >= b, and returns the start of the best match after extending it backward (not before
// lit or b). errNoMatch means none up to the end of the target.
//
// A match far (more than farJump) from where the current diagonal points would make all the base
// before it unusable, so it is only taken if no near match turns up within farLookahead bytes of
// target after it: after an insertion the data that follows is near, and a chance duplicate of
// the inserted bytes far ahead must not win.
func (e *engine) search(t, lit, b, d int64) (int64, int64, error) {
	if e.idx == nil {
		return 0, 0, errNoMatch
	}
	<-e.idx.ready
	if e.idx.err != nil {
		return 0, 0, e.idx.err
	}
	const want = 64 << 10
	farAt, farB, farUntil := int64(-1), int64(0), int64(0)
	noMatch := func() (int64, int64, error) {
		if farAt >= 0 {
			return farAt, farB, nil
		}
		return 0, 0, errNoMatch
	}
	pos := t
	if e.anyOrder {
		// The window the base index holds may start before t, inside the copy just made: a
		// small file whose first bytes (a gzip header) happened to continue that copy.
		pos = max(t-anyOrderLookBack, 0)
	}
	if e.T-pos < winLen {
		return noMatch()
	}
	s, err := e.tw.at(pos, want)
	if err != nil {
		return 0, 0, err
	}
	i := 0
	h := hashWindow(s)
	for {
		// Invariant: the window is s[i:i+winLen], at target offset pos+i, and h is its hash.
		if farAt >= 0 && pos+int64(i) > farUntil {
			return farAt, farB, nil
		}
		if s[i] != 0 {
			if e.idx.maybe(h) {
				e.cands = e.idx.lookup(h, e.cands[:0])
				if len(e.cands) > 0 {
					m, err := e.evaluate(pos+int64(i), s[i:i+winLen], lit, b, d)
					if err != nil {
						return 0, 0, err
					}
					switch {
					case m.ok && !m.far:
						return m.t, m.b, nil
					case m.ok && farAt < 0:
						farAt, farB, farUntil = m.t, m.b, pos+int64(i)+farLookahead
					}
				}
			}
		} else if z := leadingZeros(s[i:]); z >= winLen || i+z+winLen > len(s) {
			// Indexed windows start with a non-zero byte: jump over the zeros.
			pos += int64(i + z)
			if e.T-pos < winLen {
				return noMatch()
			}
			if s, err = e.tw.at(pos, want); err != nil {
				return 0, 0, err
			}
			i = 0
			h = hashWindow(s)
			continue
		}
		if i+winLen >= len(s) {
			pos += int64(i + 1)
			if e.T-pos < winLen {
				return noMatch()
			}
			if s, err = e.tw.at(pos, want); err != nil {
				return 0, 0, err
			}
			i = 0
			h = hashWindow(s)
			continue
		}
		h = rollHash(h, s[i], s[i+winLen])
		i++
	}
}

type match struct {
	t, b    int64 // start in target and base, after backward extension
	ok, far bool
}

// evaluate checks the candidates in e.cands, plus the current diagonal, for the target window
// win at tp and returns the best acceptable match. The current diagonal wins whenever it
// matches; otherwise the longest match forward (within rankSpan), then the nearest.
func (e *engine) evaluate(tp int64, win []byte, lit, b, d int64) (match, error) {
	if c0 := tp + d; c0 >= b && c0+winLen <= e.B {
		e.cands = append(e.cands, c0)
	}
	// over: the bytes of a match that target[lit:] does not need (a window found before lit).
	over := max(lit-tp, 0)
	bestC, bestF, bestJump := int64(-1), int64(0), int64(0)
	for _, c := range e.cands {
		if c < b || c+winLen > e.B {
			continue
		}
		bs, err := e.pb.at(c, winLen)
		if err != nil {
			return match{}, err
		}
		if !bytes.Equal(bs[:winLen], win) {
			continue
		}
		f, err := e.extend(e.pt, e.pb, tp+winLen, c+winLen, min(rankSpan, e.T-tp-winLen, e.B-c-winLen))
		if err != nil {
			return match{}, err
		}
		f += winLen - over
		if f <= 0 {
			continue
		}
		jump := c - (tp + d)
		if jump < 0 {
			jump = -jump
		}
		if jump == 0 && f >= minAnchor {
			bestC, bestF, bestJump = c, f, 0
			break
		}
		if bestC < 0 || f > bestF || (f == bestF && jump < bestJump) {
			bestC, bestF, bestJump = c, f, jump
		}
	}
	if bestC < 0 {
		return match{}, nil
	}
	if over > 0 {
		if bestF < minAnchor {
			return match{}, nil
		}
		return match{t: lit, b: bestC + over, ok: true}, nil
	}
	k, err := e.extendBack(tp, bestC, lit, b)
	if err != nil {
		return match{}, err
	}
	// Without order, a far match leaves no base behind it unusable.
	far := bestJump > farJump && !e.anyOrder
	need := int64(minAnchor)
	if far {
		need = farAnchor
	}
	if k+bestF < need {
		return match{}, nil
	}
	return match{t: tp - k, b: bestC - k, ok: true, far: far}, nil
}

// flushLiteral emits target[lo:hi] as literal, except zero runs of at least minZeroRun bytes for
// which a zero run of the base within [bLo, bHi) can be copied instead (any order: the longest
// zero run of the base, as often as needed).
func (e *engine) flushLiteral(lo, hi, bLo, bHi int64) error {
	if e.anyOrder {
		bLo, bHi = 0, e.B
	}
	if hi-lo < minZeroRun || e.idx == nil || bHi-bLo < minZeroRun {
		return e.em.literal(lo, hi)
	}
	pos, cur := lo, bLo
	for from := lo; from < hi; {
		z0, z1, err := e.nextZeroRun(from, hi)
		if err != nil {
			return err
		}
		if z0 < 0 {
			break
		}
		from = z1
		<-e.idx.ready
		if e.idx.err != nil {
			return e.idx.err
		}
		for z1-z0 >= minZeroRun {
			sp, ok := e.idx.zeroAfter(cur)
			if e.anyOrder {
				sp = e.idx.longest
				ok = sp.end-sp.start >= minZeroRun
			}
			if !ok || sp.start >= bHi {
				return e.em.literal(pos, hi) // no zero left in the base range
			}
			sp.end = min(sp.end, bHi)
			if sp.end-sp.start < minZeroRun {
				cur = sp.end
				continue
			}
			k := min(z1-z0, sp.end-sp.start)
			if err := e.em.literal(pos, z0); err != nil {
				return err
			}
			if err := e.em.copy(sp.start, k); err != nil {
				return err
			}
			cur = sp.start + k
			z0 += k
			pos = z0
		}
	}
	return e.em.literal(pos, hi)
}

// nextZeroRun finds the first run of at least minZeroRun zero bytes of the target within
// [from, hi), sampling one byte in minZeroRun. It returns -1 if there is none.
func (e *engine) nextZeroRun(from, hi int64) (int64, int64, error) {
	for k := from + minZeroRun - 1; k < hi; k += minZeroRun {
		p, err := e.ta.at(k, 1)
		if err != nil {
			return -1, -1, err
		}
		if p[0] != 0 {
			continue
		}
		back, err := e.zerosBefore(k, from)
		if err != nil {
			return -1, -1, err
		}
		fwd, err := e.zerosFrom(k, hi)
		if err != nil {
			return -1, -1, err
		}
		if fwd+back >= minZeroRun {
			return k - back, k + fwd, nil
		}
	}
	return -1, -1, nil
}

func (e *engine) zerosFrom(pos, hi int64) (int64, error) {
	var n int64
	for pos+n < hi {
		p, err := e.ta.at(pos+n, 1)
		if err != nil {
			return n, err
		}
		m := min(int64(len(p)), hi-pos-n)
		z := int64(leadingZeros(p[:m]))
		n += z
		if z < m {
			break
		}
	}
	return n, nil
}

func (e *engine) zerosBefore(end, lo int64) (int64, error) {
	var n int64
	for end-n > lo {
		p, err := e.ta.before(end-n, 1)
		if err != nil {
			return n, err
		}
		m := min(int64(len(p)), end-n-lo)
		z := int64(trailingZeros(p[int64(len(p))-m:]))
		n += z
		if z < m {
			break
		}
	}
	return n, nil
}

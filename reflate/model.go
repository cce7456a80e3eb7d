package reflate

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
)

var errStop = errors.New("stop")

// runModel walks the token boundaries of the blocks' fixed and dynamic parts with a zlib
// matcher. At each boundary it calls next with the token index, the plain position and the
// prediction; next returns the stream's real token there. Stored blocks reset the lazy state.
// With record set (and a lazy level), it returns the segments where Rebuild may start
// matchers of its own.
func runModel(cfg zlibConfig, plain []byte, blocks []block, restarts []int, record bool, next nextFunc) ([]segment, error) {
	z := newMatcher(cfg, plain)
	var segs []segment
	last := 0
	atBlock := func(bi, p int) {
		if record && !cfg.fast && p-last >= segmentSize {
			segs = append(segs, segment{block: bi, pos: p, pendValid: z.pendValid, pendLen: z.pendLen, pendDist: z.pendDist})
			last = p
		}
	}
	p, ri, err := runBlocks(z, blocks, 0, len(blocks), 0, restarts, 0, atBlock, next)
	if err != nil {
		return nil, err
	}
	return segs, checkEnd(p, len(plain), ri, restarts)
}

func checkEnd(p, n, ri int, restarts []int) error {
	if p != n {
		return fmt.Errorf("blocks cover %d of %d plain bytes", p, n)
	}
	if ri != len(restarts) {
		return fmt.Errorf("restart point %d is not at a block start", restarts[ri])
	}
	return nil
}

type nextFunc func(i, p int, pred token, z *matcher) (token, error)

// segmentSize is how much plain data, at least, a segment of a lazy-level stream covers
// (a variable for tests).
var segmentSize = 1 << 20

// segment is a block start where a matcher can start afresh: at a lazy level the hash chains
// there are the strings of the preceding 32 KiB, so only the lazy evaluation state has to be
// recorded.
type segment struct {
	block     int
	pos       int
	pendValid bool
	pendLen   int
	pendDist  int
}

// runBlocks runs z over blocks[bi:bj] from plain position p, restarts[ri] being the first
// restart point at or after p; it returns the position and restart index it ends at.
func runBlocks(z *matcher, blocks []block, bi, bj, p int, restarts []int, ri int, atBlock func(bi, p int), next nextFunc) (int, int, error) {
	plain := z.data
	if ri < len(restarts) {
		z.end = restarts[ri]
	}
	for ; bi < bj; bi++ {
		b := &blocks[bi]
		if ri < len(restarts) && restarts[ri] == p {
			ri++
			end := len(plain)
			if ri < len(restarts) {
				end = restarts[ri]
			}
			z.restart(p, end)
		}
		if b.typ == typeStored {
			p += b.storedLen
			z.reset(p)
			continue
		}
		if atBlock != nil {
			atBlock(bi, p)
		}
		for i := b.tokStart; i < b.tokEnd; i++ {
			if p >= len(plain) {
				return p, ri, fmt.Errorf("block %d: tokens past the end of the plain data", bi)
			}
			pred := z.predict(p)
			t, err := next(i, p, pred, z)
			if err != nil {
				return p, ri, err
			}
			z.accept(p, t)
			p += max(1, int(t.length))
		}
	}
	return p, ri, nil
}

// runSegments is runModel split at segs, the segments run concurrently. mk makes each
// segment's next function.
func runSegments(cfg zlibConfig, plain []byte, blocks []block, restarts []int, segs []segment, mk func() nextFunc) error {
	starts := append([]segment{{}}, segs...)
	errs := make([]error, len(starts))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for k := range starts {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			st := starts[k]
			bj, endPos := len(blocks), len(plain)
			if k+1 < len(starts) {
				bj, endPos = starts[k+1].block, starts[k+1].pos
			}
			z := newMatcher(cfg, plain)
			ri := sort.SearchInts(restarts, st.pos)
			if ri < len(restarts) {
				z.end = restarts[ri]
			}
			if k > 0 {
				z.ins = max(0, st.pos-wSize)
				if st.pendValid {
					z.insertTo(st.pos + 1)
				} else {
					z.insertTo(st.pos)
				}
				z.pendValid, z.pendLen, z.pendDist = st.pendValid, st.pendLen, st.pendDist
			}
			p, ri, err := runBlocks(z, blocks, st.block, bj, st.pos, restarts, ri, nil, mk())
			if err == nil {
				if p != endPos {
					err = fmt.Errorf("segment %d ends at %d, not %d", k, p, endPos)
				} else if lo, hi := sort.SearchInts(restarts, endPos), sort.SearchInts(restarts, endPos+1); (k+1 < len(starts) && (ri < lo || ri > hi)) || (k+1 == len(starts) && ri != len(restarts)) {
					// Restarts before the segment's end must have been met; one at its end
					// may have been (at an empty block), and the next segment repeats it.
					err = fmt.Errorf("segment %d: a restart point is not at a block start", k)
				}
			}
			errs[k] = err
		}(k)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// markRestarts guesses where the producer started a new deflate stream over the same data
// (pigz's independent 128 KiB pieces): at empty blocks, which pigz writes to end a piece on a
// byte boundary, and at block starts on a 64 KiB multiple.
func markRestarts(s *stream) []int {
	var rs []int
	for _, b := range s.blocks {
		empty := (b.typ == typeStored && b.storedLen == 0) || (b.typ != typeStored && b.tokStart == b.tokEnd)
		if b.pos > 0 && b.pos < len(s.plain) && (empty || b.pos%(64<<10) == 0) && (len(rs) == 0 || rs[len(rs)-1] != b.pos) {
			rs = append(rs, b.pos)
		}
	}
	return rs
}

type correction struct {
	index int
	tok   token
	rank  int // the match's rank among the candidates of its length (matcher.rank), or -1
}

// corrections lists where the stream's tokens differ from the model's, stopping early once
// plain position limit is passed or more than maxCount are found (then ok is false).
func corrections(s *stream, restarts []int, cfg zlibConfig, limit, maxCount int, record bool) (cs []correction, segs []segment, ok bool, err error) {
	segs, err = runModel(cfg, s.plain, s.blocks, restarts, record, func(i, p int, pred token, z *matcher) (token, error) {
		t := s.tokens[i]
		if t != pred {
			r := -1
			if t.isMatch() {
				r = z.rank(p, int(t.length), int(t.dist))
			}
			cs = append(cs, correction{i, t, r})
			if len(cs) > maxCount {
				return t, errStop
			}
		}
		if p >= limit {
			return t, errStop
		}
		return t, nil
	})
	if errors.Is(err, errStop) {
		return cs, nil, len(cs) <= maxCount, nil
	}
	return cs, segs, err == nil, err
}

// detectLevel picks the zlib level whose matcher differs least from the stream's tokens over
// its first bytes.
func detectLevel(s *stream, restarts []int) int {
	const sample = 256 << 10
	best, bestN := 6, int(^uint(0)>>1)
	for _, level := range []int{6, 9, 1, 2, 3, 4, 5, 7, 8} {
		cs, _, _, err := corrections(s, restarts, zlibLevels[level], sample, bestN, false)
		if err != nil {
			continue
		}
		if len(cs) < bestN {
			best, bestN = level, len(cs)
			if bestN == 0 {
				break
			}
		}
	}
	return best
}

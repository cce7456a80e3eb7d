package reflate

import (
	"errors"
	"fmt"
)

var errStop = errors.New("stop")

// runModel walks the token boundaries of the blocks' fixed and dynamic parts with a zlib
// matcher. At each boundary it calls next with the token index, the plain position and the
// prediction; next returns the stream's real token there. Stored blocks reset the lazy state.
func runModel(cfg zlibConfig, plain []byte, blocks []block, restarts []int, next func(i, p int, pred token, z *matcher) (token, error)) error {
	z := newMatcher(cfg, plain)
	ri := 0
	if len(restarts) > 0 {
		z.end = restarts[0]
	}
	p := 0
	for bi := range blocks {
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
		for i := b.tokStart; i < b.tokEnd; i++ {
			if p >= len(plain) {
				return fmt.Errorf("block %d: tokens past the end of the plain data", bi)
			}
			pred := z.predict(p)
			t, err := next(i, p, pred, z)
			if err != nil {
				return err
			}
			z.accept(p, t)
			p += max(1, int(t.length))
		}
	}
	if p != len(plain) {
		return fmt.Errorf("blocks cover %d of %d plain bytes", p, len(plain))
	}
	if ri != len(restarts) {
		return fmt.Errorf("restart point %d is not at a block start", restarts[ri])
	}
	return nil
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
func corrections(s *stream, restarts []int, cfg zlibConfig, limit, maxCount int) (cs []correction, ok bool, err error) {
	err = runModel(cfg, s.plain, s.blocks, restarts, func(i, p int, pred token, z *matcher) (token, error) {
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
		return cs, len(cs) <= maxCount, nil
	}
	return cs, err == nil, err
}

// detectLevel picks the zlib level whose matcher differs least from the stream's tokens over
// its first bytes.
func detectLevel(s *stream, restarts []int) int {
	const sample = 256 << 10
	best, bestN := 6, int(^uint(0)>>1)
	for _, level := range []int{6, 9, 1, 2, 3, 4, 5, 7, 8} {
		cs, _, err := corrections(s, restarts, zlibLevels[level], sample, bestN)
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

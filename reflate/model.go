package reflate

import (
	"errors"
	"fmt"
)

var errStop = errors.New("stop")

type nextFunc func(i, p int, pred token, z *matcher) (token, error)

// runChunk walks the token boundaries of a chunk's fixed and dynamic blocks with a zlib
// matcher started afresh: its hash chains hold the strings of the history before the chunk
// and its lazy evaluation state is the one recorded for the chunk. At each boundary it calls
// next with the token index, the position and the prediction; next returns the stream's real
// token there. Stored blocks reset the lazy state. It returns the matcher at the chunk's end.
func runChunk(m modelCfg, c *chunk, next nextFunc) (*matcher, error) {
	z := newMatcher(m, c.data)
	rs := c.restarts
	ri := 0
	if ri < len(rs) {
		z.end = rs[ri]
	}
	p := c.hist
	if p > 0 && z.cfg.fast {
		// deflate_fast leaves the strings inside long matches out of the hash chains, so
		// chains primed with every string of the history would differ from the producer's:
		// run the model over the history instead (from empty chains, accepting its own
		// predictions), which skips about the same strings.
		for q := 0; q < p; {
			t := z.predict(q)
			if q+int(t.length) > p {
				break
			}
			z.accept(q, t)
			q += max(1, int(t.length))
		}
		z.insertTo(p)
		z.ins = max(z.ins, p)
	} else if p > 0 {
		z.ins = max(0, p-z.wmask-1)
		if c.pendValid {
			z.insertTo(p + 1)
		} else {
			z.insertTo(p)
		}
		z.pendValid, z.pendLen, z.pendDist = c.pendValid, c.pendLen, c.pendDist
	}
	for bi := range c.blocks {
		b := &c.blocks[bi]
		if ri < len(rs) && rs[ri] == p {
			ri++
			end := len(c.data)
			if ri < len(rs) {
				end = rs[ri]
			}
			z.restart(p, end)
		}
		if b.typ == typeStored {
			p += b.storedLen
			if p > c.end {
				return nil, fmt.Errorf("block %d: stored data past the chunk's end", bi)
			}
			z.reset(p)
			continue
		}
		for i := b.tokStart; i < b.tokEnd; i++ {
			if p >= c.end {
				return nil, fmt.Errorf("block %d: tokens past the chunk's end", bi)
			}
			t, err := next(i, p, z.predict(p), z)
			if err != nil {
				return nil, err
			}
			z.accept(p, t)
			p += max(1, int(t.length))
		}
	}
	if p != c.end {
		return nil, fmt.Errorf("blocks cover %d of %d plain bytes", p-c.hist, c.end-c.hist)
	}
	// A restart at the chunk's end bounds its data; the next chunk makes it.
	if ri < len(rs) && !(ri == len(rs)-1 && rs[ri] == c.end) {
		return nil, fmt.Errorf("restart point %d is not at a block start", rs[ri]-c.hist)
	}
	return z, nil
}

type correction struct {
	index int
	tok   token
	rank  int // the match's rank among the candidates of its length (matcher.rank), or -1
}

// corrections lists where the chunk's tokens differ from the model's, stopping early once
// position limit is passed or more than maxCount are found (then ok is false). z is the
// matcher at the chunk's end (nil when stopped early).
func corrections(c *chunk, m modelCfg, limit, maxCount int) (cs []correction, z *matcher, ok bool, err error) {
	z, err = runChunk(m, c, func(i, p int, pred token, z *matcher) (token, error) {
		t := c.tokens[i]
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
	return cs, z, err == nil, err
}

// likelyModels are the producers' parameters detect tries first, at every level: zlib's
// defaults (windowBits 15, memLevel 8), qemu's qcow2 clusters (12, 9), then 15 with memLevel 9.
var likelyModels = [][2]int{{15, 8}, {12, 9}, {15, 9}}

var detectLevels = []int{6, 9, 1, 2, 3, 4, 5, 7, 8}

// detect picks the model whose tokens differ least from the chunk's over its first bytes.
// Windows too small for the chunk's longest distance are not tried. Other windowBits and
// memLevel pairs are tried (at the best level found and level 6) only where the stream's
// distances fit a window below 32 KiB and the best found costs more than a correction per
// 2 KiB.
func detect(c *chunk) modelCfg {
	const sample = 256 << 10
	maxD := 0
	for _, t := range c.tokens {
		maxD = max(maxD, int(t.dist))
	}
	fits := func(w int) bool { return w == 15 || maxD <= 1<<w-lookahead }
	best, bestN := modelCfg{6, 15, 8}, int(^uint(0)>>1)
	try := func(m modelCfg) bool {
		cs, _, _, err := corrections(c, m, c.hist+sample, bestN)
		if err == nil && len(cs) < bestN {
			best, bestN = m, len(cs)
		}
		return bestN == 0
	}
	order := likelyModels
	if fits(12) {
		// No distance beyond a 4 KiB window: most likely qemu's clusters.
		order = [][2]int{{12, 9}, {15, 8}, {15, 9}}
	}
	for _, wm := range order {
		if !fits(wm[0]) {
			continue
		}
		for _, l := range detectLevels {
			if try(modelCfg{l, wm[0], wm[1]}) {
				return best
			}
		}
	}
	if maxD > 1<<14-lookahead || bestN <= min(c.end-c.hist, sample)/2048 {
		return best
	}
	level := best.level
	for w := 14; w >= 9 && fits(w); w-- {
		for ml := 9; ml >= 1; ml-- {
			if (w == 12 && ml == 9) || try(modelCfg{level, w, ml}) || (level != 6 && try(modelCfg{6, w, ml})) {
				if bestN == 0 {
					return best
				}
			}
		}
	}
	return best
}

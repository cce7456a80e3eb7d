package reflate

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Method 2 is the zlib-ng model (zlibng_match.go) over a whole stream of one chunk; its
// format is in doc.go.

// ngTrials are the parameter sets tried, most likely first: qemu's VMDK grains and
// everything through compress(), then qemu's qcow2 clusters.
var ngTrials = []struct {
	level, wbits int
	capInsert    bool
}{
	{6, 15, false}, {6, 12, false}, {6, 15, true}, {6, 12, true}, {9, 15, false}, {5, 15, false},
	{4, 15, false}, {3, 15, false}, {7, 15, false}, {8, 15, false}, {2, 15, false}, {1, 15, false},
	{5, 12, false}, {4, 12, false}, {3, 12, false}, {7, 12, false}, {8, 12, false}, {9, 12, false},
	{2, 12, false}, {1, 12, false}, {5, 15, true}, {4, 15, true}, {3, 15, true}, {5, 12, true},
	{4, 12, true}, {3, 12, true},
}

// ngParam is the level byte of method 2.
func ngParam(level, wbits int, capInsert bool) byte {
	b := byte(level | (wbits-8)<<4)
	if capInsert {
		b |= 0x80
	}
	return b
}

// splitZlibNG returns reconstruction data for c, a whole stream of n bytes whose CRC-32 is
// sum, by the zlib-ng model when it is smaller than limit bytes, else nil. The result is
// checked: it rebuilds the stream's length and CRC-32.
func splitZlibNG(c *chunk, n int64, sum uint32, limit int) []byte {
	maxDist := 0
	for _, t := range c.tokens {
		maxDist = max(maxDist, int(t.dist))
	}
	plain := c.data[:c.end]
	const sample = 256 << 10
	// worth trying only below 2% of the tokens; the cap bounds the work of each trial
	best, bestN := -1, min(len(c.tokens)/50+1, sample/50)
	for i, tr := range ngTrials {
		if maxDist > 1<<tr.wbits {
			continue
		}
		cs, ok := ngCorrections(c, ngParam(tr.level, tr.wbits, tr.capInsert), sample, bestN)
		if ok && len(cs) < bestN {
			best, bestN = i, len(cs)
			if bestN == 0 {
				break
			}
		}
	}
	if best < 0 {
		return nil
	}
	tr := ngTrials[best]
	param := ngParam(tr.level, tr.wbits, tr.capInsert)
	cs, ok := ngCorrections(c, param, len(plain)+1, len(c.tokens))
	if !ok {
		return nil
	}
	recon := appendNGHeader(nil, param, n, sum, len(plain))
	recon = append(recon, encodeNGBody(c, cs)...)
	if len(recon) >= limit {
		return nil
	}
	// The check Rebuild makes; should it fail (a bug), method 1 stays.
	if h, err := readHeader(recon); err != nil || rebuild(io.Discard, bytes.NewReader(plain), h) != nil {
		return nil
	}
	return recon
}

// appendNGHeader appends method 2's header (doc.go); the body follows it.
func appendNGHeader(b []byte, param byte, n int64, sum uint32, plainLen int) []byte {
	b = append(append(b, magic...), version, methodZlibNG, param)
	b = binary.AppendUvarint(b, uint64(n))
	b = binary.LittleEndian.AppendUint32(b, sum)
	return binary.AppendUvarint(b, uint64(plainLen))
}

// checkNGParam checks method 2's level byte.
func checkNGParam(param byte) error {
	level, wbits := int(param&15), int(param>>4&7)+8
	if level < 1 || level > 9 || wbits < 9 || wbits > 15 || (param&0x80 != 0 && ngLevels[level].strategy != ngMedium) {
		return fmt.Errorf("%w: zlib-ng level %d, window bits %d", ErrCorrupt, level, wbits)
	}
	return nil
}

// runNG walks the blocks' tokens with a zlib-ng matcher; next gets each prediction and
// returns the stream's token. Stored blocks reset nothing in zlib-ng's medium strategy's
// chains (it does not write them mid-stream), so they are only skipped.
func runNG(param byte, plain []byte, blocks []block, next func(i, p int, pred token, m *ngMatcher) (token, error)) error {
	m := newNGMatcher(int(param&15), int(param>>4&7)+8, plain)
	defer m.release()
	m.capInsert = param&0x80 != 0
	p := 0
	for bi := range blocks {
		b := &blocks[bi]
		if b.typ == typeStored {
			p += b.storedLen
			m.predOK, m.nextValid = false, false
			continue
		}
		for i := b.tokStart; i < b.tokEnd; i++ {
			if p >= len(plain) {
				return fmt.Errorf("block %d: tokens past the end of the plain data", bi)
			}
			pred := m.predict(p)
			t, err := next(i, p, pred, m)
			if err != nil {
				return err
			}
			m.accept(p, t)
			p += max(1, int(t.length))
		}
	}
	if p != len(plain) {
		return fmt.Errorf("blocks cover %d of %d plain bytes", p, len(plain))
	}
	return nil
}

// ngCorrections lists where the stream's tokens differ from the zlib-ng model's, stopping
// once plain position limit is passed or more than maxCount are found (then ok is false).
func ngCorrections(c *chunk, param byte, limit, maxCount int) (cs []correction, ok bool) {
	err := runNG(param, c.data[:c.end], c.blocks, func(i, p int, pred token, _ *ngMatcher) (token, error) {
		t := c.tokens[i]
		if t != pred {
			cs = append(cs, correction{index: i, tok: t, rank: -1})
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
		return cs, len(cs) <= maxCount
	}
	return cs, err == nil
}

func encodeNGBody(s *chunk, cs []correction) []byte {
	var blocks, trees, corr []byte
	blocks = binary.AppendUvarint(blocks, uint64(len(s.blocks)))
	tb := &treeBuilder{}
	var lf [286]int
	var df [30]int
	for _, b := range s.blocks {
		f := b.typ << flagTypeShift
		if b.final {
			f |= flagFinal
		}
		switch b.typ {
		case typeStored:
			if b.pad != 0 {
				f |= flagPad
			}
			blocks = append(blocks, f)
			blocks = binary.AppendUvarint(blocks, uint64(b.storedLen))
			if b.pad != 0 {
				blocks = append(blocks, b.pad)
			}
			continue
		case typeDynamic:
			blockFreqs(s.data, b.pos, s.tokens[b.tokStart:b.tokEnd], &lf, &df)
			if !zlibHeader(tb, &lf, &df).equal(b.hdr) {
				f |= flagRawTree
				trees = appendRawHeader(trees, b.hdr)
			}
		}
		blocks = append(blocks, f)
		blocks = binary.AppendUvarint(blocks, uint64(b.tokEnd-b.tokStart))
	}
	blocks = append(blocks, s.endPad)
	corr = binary.AppendUvarint(corr, uint64(len(cs)))
	last := 0
	for _, c := range cs {
		corr = binary.AppendUvarint(corr, uint64(c.index-last))
		last = c.index + 1
		corr = binary.AppendUvarint(corr, uint64(c.tok.length))
		if c.tok.isMatch() {
			corr = binary.AppendUvarint(corr, uint64(c.tok.dist))
		}
	}
	var raw []byte
	for _, sec := range [][]byte{blocks, trees, corr} {
		raw = binary.AppendUvarint(raw, uint64(len(sec)))
		raw = append(raw, sec...)
	}
	var out bytes.Buffer
	out.WriteByte(bodyDeflated)
	w, _ := flate.NewWriter(&out, flate.BestCompression)
	w.Write(raw)
	w.Close()
	if out.Len() >= 1+len(raw) {
		return append([]byte{bodyRaw}, raw...)
	}
	return out.Bytes()
}

// rebuildNGStream is rebuild for method 2: the plain data, bounded by readHeader, is read
// whole.
func rebuildNGStream(w io.Writer, plain io.Reader, h *header) error {
	sc, _ := ngScratchPool.Get().(*ngScratch)
	if sc == nil {
		sc = &ngScratch{}
	}
	defer ngScratchPool.Put(sc)
	sc.plain = grow(sc.plain, int(h.plainLen))
	if _, err := io.ReadFull(plain, sc.plain); err != nil {
		return fmt.Errorf("reflate: plain data: %w", err)
	}
	out, err := rebuildZlibNG(sc.plain, h.body, h.ngParam, sc)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// ngScratch is the memory one method 2 rebuild works in, kept in ngScratchPool for the next
// stream (a VMDK's grains are thousands of small streams). The stream rebuildZlibNG returns
// lies in it.
type ngScratch struct {
	plain  []byte
	raw    bytes.Buffer
	fr     io.ReadCloser // a compress/flate reader, Reset for each body
	tokens []token
	out    []byte
}

var ngScratchPool sync.Pool

// grow returns b resized to n bytes, reallocated only when its capacity is short.
func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// section reads a length and that many bytes from r as a reader of their own.
func section(r *bytes.Reader, rr *recReader) *recReader {
	n := rr.uvarint(uint64(r.Len()))
	if rr.err != nil {
		return &recReader{r: bytes.NewReader(nil), err: rr.err}
	}
	b := make([]byte, n)
	r.Read(b)
	return &recReader{r: bytes.NewReader(b)}
}

// rebuildZlibNG makes the stream of method 2 from its plain data and body.
// sc, if not nil, provides the memory it works in and holds the result.
func rebuildZlibNG(plain, body []byte, param byte, sc *ngScratch) ([]byte, error) {
	if sc == nil {
		sc = &ngScratch{}
	}
	if err := checkNGParam(param); err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrCorrupt)
	}
	raw := body[1:]
	switch body[0] {
	case bodyRaw:
	case bodyDeflated:
		if sc.fr == nil {
			sc.fr = flate.NewReader(bytes.NewReader(body[1:]))
		} else {
			sc.fr.(flate.Resetter).Reset(bytes.NewReader(body[1:]), nil)
		}
		sc.raw.Reset()
		if _, err := sc.raw.ReadFrom(io.LimitReader(sc.fr, int64(64*len(plain)+1<<20))); err != nil {
			return nil, fmt.Errorf("%w: body: %v", ErrCorrupt, err)
		}
		raw = sc.raw.Bytes()
	default:
		return nil, fmt.Errorf("%w: body coding %d", ErrCorrupt, body[0])
	}
	rb := bytes.NewReader(raw)
	r := &recReader{r: rb}
	var secs [3]*recReader
	for i := range secs {
		secs[i] = section(rb, r)
	}
	if r.err != nil || rb.Len() != 0 {
		return nil, fmt.Errorf("%w: sections", ErrCorrupt)
	}
	br, tr, cr := secs[0], secs[1], secs[2]
	s := &chunk{data: plain, end: len(plain), last: true}
	nblocks := br.uvarint(uint64(len(raw)))
	ntok := 0
	for i := uint64(0); i < nblocks && br.err == nil && tr.err == nil; i++ {
		f := br.byte()
		b := block{final: f&flagFinal != 0, typ: f >> flagTypeShift & 3}
		switch b.typ {
		case typeStored:
			b.storedLen = int(br.uvarint(0xffff))
			if f&flagPad != 0 {
				b.pad = br.byte()
			}
		case typeFixed, typeDynamic:
			k := int(br.uvarint(uint64(len(plain))))
			b.tokStart, b.tokEnd = ntok, ntok+k
			ntok += k
			if b.typ == typeDynamic && f&flagRawTree != 0 {
				b.hdr = readRawHeader(tr)
			}
		default:
			return nil, fmt.Errorf("%w: block type 3", ErrCorrupt)
		}
		s.blocks = append(s.blocks, b)
		if ntok > len(plain) {
			return nil, fmt.Errorf("%w: more tokens than plain bytes", ErrCorrupt)
		}
	}
	s.endPad = br.byte()
	if br.err != nil || tr.err != nil {
		return nil, fmt.Errorf("%w: block list", ErrCorrupt)
	}
	cs, err := readNGCorrections(cr, ntok)
	if err != nil {
		return nil, err
	}
	sc.tokens = grow(sc.tokens, ntok)
	s.tokens = sc.tokens
	ci := 0
	err = runNG(param, plain, s.blocks, func(i, p int, pred token, _ *ngMatcher) (token, error) {
		t := pred
		if ci < len(cs) && cs[ci].index == i {
			t = cs[ci].tok
			ci++
		}
		if t.isMatch() && (int(t.dist) > p || p+int(t.length) > len(plain)) {
			return t, fmt.Errorf("%w: match outside the plain data", ErrCorrupt)
		}
		s.tokens[i] = t
		return t, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	placeBlocks(plain, 0, s.blocks, s.tokens)
	out, _, err := s.encodeTo(sc.out[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	sc.out = out
	return out, nil
}

// readNGCorrections decodes method 2's corrections: indexes rising below ntok, lengths 3-258,
// distances 1-32768.
func readNGCorrections(cr *recReader, ntok int) ([]correction, error) {
	n := cr.uvarint(uint64(ntok))
	cs := make([]correction, 0, n)
	next := -1
	for i := uint64(0); i < n; i++ {
		next += int(cr.uvarint(uint64(ntok))) + 1
		c := correction{index: next, rank: -1}
		l := cr.uvarint(maxMatch)
		c.tok.length = uint16(l)
		if l != 0 {
			c.tok.dist = uint16(cr.uvarint(wSize))
			if c.tok.dist == 0 || l < minMatch {
				return nil, fmt.Errorf("%w: correction %d/%d", ErrCorrupt, l, c.tok.dist)
			}
		}
		if cr.err != nil || next >= ntok {
			return nil, fmt.Errorf("%w: corrections", ErrCorrupt)
		}
		cs = append(cs, c)
	}
	return cs, cr.err
}

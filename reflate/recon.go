package reflate

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
)

const (
	magic   = "RFL"
	version = 1

	methodGoFlate = 0 // the stream is Go compress/flate's output at a level: nothing else stored
	methodZlib    = 1 // zlib model at a level plus corrections

	flagFinal     = 1 << 0
	flagTypeShift = 1
	flagRawTree   = 1 << 3
	flagPad       = 1 << 4

	bodyRaw      = 0
	bodyDeflated = 1
)

// ErrCorrupt is wrapped by every error about reconstruction data that cannot be used.
var ErrCorrupt = errors.New("reflate: corrupt reconstruction data")

// Split decodes the raw deflate stream at the start of src. It returns the plain data, the
// reconstruction data that Rebuild needs to make the stream again, and n, the number of bytes
// of src the stream occupies (what follows, such as a gzip trailer, is the caller's). Split
// checks its own work: it rebuilds the stream and returns an error if that does not give the
// same bytes.
func Split(src []byte) (plain, recon []byte, n int, err error) {
	return split(src, true)
}

// split is Split; tests turn off the compress/flate path to exercise the model on its streams.
func split(src []byte, tryGo bool) (plain, recon []byte, n int, err error) {
	s, err := parse(src)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reflate: %w", err)
	}
	comp := src[:s.nbytes]
	if level, ok := goFlateLevel(s.plain, comp); tryGo && ok {
		recon = appendHeader(nil, comp, len(s.plain), methodGoFlate, level)
	} else {
		restarts := markRestarts(s)
		level := detectLevel(s, restarts)
		body, err := encodeBody(s, restarts, level)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("reflate: %w", err)
		}
		recon = appendHeader(nil, comp, len(s.plain), methodZlib, byte(level))
		recon = binary.AppendUvarint(recon, uint64(len(body)))
		recon = append(recon, body...)
		if ng := splitZlibNG(s, comp, len(recon)); ng != nil { // zlib-ng (zlibng.go) when smaller
			recon = ng
		}
	}
	out, err := Rebuild(s.plain, recon)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reflate: checking the reconstruction: %w", err)
	}
	if !bytes.Equal(out, comp) {
		return nil, nil, 0, errors.New("reflate: checking the reconstruction: rebuilt stream differs")
	}
	return s.plain, recon, s.nbytes, nil
}

func appendHeader(b, comp []byte, plainLen int, method, level byte) []byte {
	b = append(b, magic...)
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(len(comp)))
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(comp))
	b = binary.AppendUvarint(b, uint64(plainLen))
	return append(b, method, level)
}

// encodeBody writes the block list, the trees that differ from zlib's and the token
// corrections, flate-compressed.
func encodeBody(s *stream, restarts []int, level int) ([]byte, error) {
	cs, segs, _, err := corrections(s, restarts, zlibLevels[level], len(s.plain)+1, len(s.tokens), true)
	if err != nil {
		return nil, err
	}
	var blocks, trees, corr, segments []byte
	segments = binary.AppendUvarint(segments, uint64(len(segs)))
	lastBlock, lastPos := 0, 0
	for _, sg := range segs {
		segments = binary.AppendUvarint(segments, uint64(sg.block-lastBlock))
		segments = binary.AppendUvarint(segments, uint64(sg.pos-lastPos))
		v := uint64(sg.pendLen) << 1
		if sg.pendValid {
			v |= 1
		}
		segments = binary.AppendUvarint(segments, v)
		segments = binary.AppendUvarint(segments, uint64(sg.pendDist))
		lastBlock, lastPos = sg.block, sg.pos
	}
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
			blockFreqs(s.plain, b.pos, s.tokens[b.tokStart:b.tokEnd], &lf, &df)
			if !zlibHeader(tb, &lf, &df).equal(b.hdr) {
				f |= flagRawTree
				trees = appendRawHeader(trees, b.hdr)
			}
		}
		blocks = append(blocks, f)
		blocks = binary.AppendUvarint(blocks, uint64(b.tokEnd-b.tokStart))
	}
	blocks = append(blocks, s.endPad)
	blocks = binary.AppendUvarint(blocks, uint64(len(restarts)))
	last := 0
	for _, r := range restarts {
		blocks = binary.AppendUvarint(blocks, uint64(r-last))
		last = r
	}
	corr = binary.AppendUvarint(corr, uint64(len(cs)))
	last = 0
	for _, c := range cs {
		corr = binary.AppendUvarint(corr, uint64(c.index-last))
		last = c.index + 1
		corr = binary.AppendUvarint(corr, uint64(c.tok.length))
		if c.tok.isMatch() {
			corr = binary.AppendUvarint(corr, uint64(c.rank+1))
			if c.rank < 0 {
				corr = binary.AppendUvarint(corr, uint64(c.tok.dist))
			}
		}
	}
	var raw []byte
	for _, sec := range [][]byte{blocks, trees, corr, segments} {
		raw = binary.AppendUvarint(raw, uint64(len(sec)))
		raw = append(raw, sec...)
	}
	var out bytes.Buffer
	out.WriteByte(bodyDeflated)
	w, _ := flate.NewWriter(&out, flate.BestCompression)
	w.Write(raw)
	w.Close()
	if out.Len() >= 1+len(raw) {
		return append([]byte{bodyRaw}, raw...), nil
	}
	return out.Bytes(), nil
}

func appendRawHeader(b []byte, h *dynHeader) []byte {
	b = append(b, byte(h.hlit-257), byte(h.hdist-1), byte(h.hclen-4))
	for i := 0; i < h.hclen; i++ {
		b = append(b, h.clLens[clOrder[i]])
	}
	b = binary.AppendUvarint(b, uint64(len(h.seq)))
	for _, c := range h.seq {
		b = append(b, c.sym)
		if c.sym >= 16 {
			b = append(b, c.extra)
		}
	}
	return b
}

// reader decodes the uncompressed body sections; every read is bounds-checked.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > max {
		r.err = ErrCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = ErrCorrupt
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.err = ErrCorrupt
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// Rebuild makes the deflate stream again from its plain data and the reconstruction data
// Split returned. It never returns a stream that differs from the original: the length and
// CRC-32 recorded in the reconstruction data are checked.
func Rebuild(plain, recon []byte) ([]byte, error) {
	r := &reader{b: recon}
	if !bytes.HasPrefix(recon, []byte(magic)) {
		return nil, fmt.Errorf("%w: no %q magic", ErrCorrupt, magic)
	}
	r.bytes(uint64(len(magic)))
	if v := r.byte(); v != version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, v, version)
	}
	n := r.uvarint(1 << 40)
	var sum uint32
	if b := r.bytes(4); b != nil {
		sum = binary.LittleEndian.Uint32(b)
	}
	plainLen := r.uvarint(1 << 40)
	method := r.byte()
	level := r.byte()
	if r.err != nil {
		return nil, fmt.Errorf("%w: header", ErrCorrupt)
	}
	if plainLen != uint64(len(plain)) {
		return nil, fmt.Errorf("reflate: plain data is %d bytes, the reconstruction data is for %d", len(plain), plainLen)
	}
	var out []byte
	var err error
	switch method {
	case methodGoFlate:
		out, err = goFlate(plain, int(level)-2)
	case methodZlib:
		if level < 1 || level > 9 {
			return nil, fmt.Errorf("%w: zlib level %d", ErrCorrupt, level)
		}
		body := r.bytes(r.uvarint(1 << 40))
		if r.err != nil {
			return nil, fmt.Errorf("%w: body", ErrCorrupt)
		}
		out, err = rebuildZlib(plain, body, int(level), int(n))
	case methodZlibNG:
		body := r.bytes(r.uvarint(1 << 40))
		if r.err != nil {
			return nil, fmt.Errorf("%w: body", ErrCorrupt)
		}
		out, err = rebuildZlibNG(plain, body, level, int(n))
	default:
		return nil, fmt.Errorf("%w: method %d", ErrCorrupt, method)
	}
	if err != nil {
		return nil, err
	}
	if uint64(len(out)) != n || crc32.ChecksumIEEE(out) != sum {
		return nil, errors.New("reflate: rebuilt stream does not match its recorded length and CRC-32 (damaged plain or reconstruction data)")
	}
	return out, nil
}

func rebuildZlib(plain, body []byte, level, n int) ([]byte, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrCorrupt)
	}
	raw := body[1:]
	switch body[0] {
	case bodyRaw:
	case bodyDeflated:
		// The body holds at most a few bytes per block and per correction; bound its expansion.
		lr := io.LimitReader(flate.NewReader(bytes.NewReader(body[1:])), int64(64*len(plain)+1<<20))
		var err error
		if raw, err = io.ReadAll(lr); err != nil {
			return nil, fmt.Errorf("%w: body: %v", ErrCorrupt, err)
		}
	default:
		return nil, fmt.Errorf("%w: body coding %d", ErrCorrupt, body[0])
	}
	r := &reader{b: raw}
	secs := [4]*reader{}
	for i := range secs {
		secs[i] = &reader{b: r.bytes(r.uvarint(uint64(len(raw))))}
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: sections", ErrCorrupt)
	}
	br, tr, cr, sr := secs[0], secs[1], secs[2], secs[3]
	s := &stream{plain: plain, nbytes: n}
	nblocks := br.uvarint(uint64(len(br.b)))
	ntok := 0
	pos := 0
	for i := uint64(0); i < nblocks && br.err == nil && tr.err == nil; i++ {
		f := br.byte()
		b := block{final: f&flagFinal != 0, typ: f >> flagTypeShift & 3, pos: pos}
		switch b.typ {
		case typeStored:
			b.storedLen = int(br.uvarint(0xffff))
			if f&flagPad != 0 {
				b.pad = br.byte()
			}
			pos += b.storedLen
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
	nr := br.uvarint(uint64(len(br.b)))
	var restarts []int
	last := 0
	for i := uint64(0); i < nr && br.err == nil; i++ {
		d := int(br.uvarint(uint64(len(plain))))
		last += d
		if d == 0 || last >= len(plain) {
			// Split writes rising points inside the data; others would only cost time.
			return nil, fmt.Errorf("%w: restart point %d", ErrCorrupt, last)
		}
		restarts = append(restarts, last)
	}
	if br.err != nil || tr.err != nil {
		return nil, fmt.Errorf("%w: block list", ErrCorrupt)
	}
	cs, err := readCorrections(cr, ntok)
	if err != nil {
		return nil, err
	}
	segs, err := readSegments(sr, s.blocks, len(plain))
	if err != nil {
		return nil, err
	}
	s.tokens = make([]token, ntok)
	err = runSegments(zlibLevels[level], plain, s.blocks, restarts, segs, func() nextFunc {
		ci := -1
		return func(i, p int, pred token, z *matcher) (token, error) {
			if ci < 0 {
				ci = sort.Search(len(cs), func(j int) bool { return cs[j].index >= i })
			}
			t := pred
			if ci < len(cs) && cs[ci].index == i {
				c := cs[ci]
				ci++
				t = c.tok
				if c.rank >= 0 {
					if t.dist = uint16(z.byRank(p, int(t.length), c.rank)); t.dist == 0 {
						return t, fmt.Errorf("%w: no match of rank %d", ErrCorrupt, c.rank)
					}
				}
			}
			if t.isMatch() && (t.dist == 0 || int(t.dist) > p || p+int(t.length) > len(plain)) {
				return t, fmt.Errorf("%w: match outside the plain data", ErrCorrupt)
			}
			s.tokens[i] = t
			return t, nil
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	tb := &treeBuilder{}
	var lf [286]int
	var df [30]int
	pos = 0
	for bi := range s.blocks {
		b := &s.blocks[bi]
		b.pos = pos
		switch b.typ {
		case typeStored:
			pos += b.storedLen
		default:
			for _, t := range s.tokens[b.tokStart:b.tokEnd] {
				pos += max(1, int(t.length))
			}
			if b.typ == typeDynamic && b.hdr == nil {
				blockFreqs(plain, b.pos, s.tokens[b.tokStart:b.tokEnd], &lf, &df)
				b.hdr = zlibHeader(tb, &lf, &df)
			}
		}
	}
	out, err := s.encode()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return out, nil
}

func readRawHeader(r *reader) *dynHeader {
	h := &dynHeader{hlit: int(r.byte()) + 257, hdist: int(r.byte()) + 1, hclen: int(r.byte()) + 4}
	if h.hlit > numLitLen || h.hdist > numDist || h.hclen > numCodeLen {
		r.err = ErrCorrupt
		return h
	}
	for i := 0; i < h.hclen; i++ {
		h.clLens[clOrder[i]] = r.byte() & 7
	}
	k := r.uvarint(uint64(h.hlit + h.hdist))
	var lens [288 + 32]uint8
	n := 0
	for j := uint64(0); j < k && r.err == nil; j++ {
		c := clSym{sym: r.byte()}
		rep, val := 1, c.sym
		switch {
		case c.sym < 16:
		case c.sym == 16:
			c.extra = r.byte() & 3
			rep = 3 + int(c.extra)
			if n == 0 {
				r.err = ErrCorrupt
				return h
			}
			val = lens[n-1]
		case c.sym == 17:
			c.extra = r.byte() & 7
			rep, val = 3+int(c.extra), 0
		case c.sym == 18:
			c.extra = r.byte() & 127
			rep, val = 11+int(c.extra), 0
		default:
			r.err = ErrCorrupt
			return h
		}
		if n+rep > h.hlit+h.hdist {
			r.err = ErrCorrupt
			return h
		}
		for ; rep > 0; rep-- {
			lens[n] = val
			n++
		}
		h.seq = append(h.seq, c)
	}
	if n != h.hlit+h.hdist {
		r.err = ErrCorrupt
	}
	copy(h.litLens[:], lens[:h.hlit])
	copy(h.distLens[:], lens[h.hlit:h.hlit+h.hdist])
	return h
}

// readCorrections decodes the corrections section; every index is below ntok.
func readCorrections(cr *reader, ntok int) ([]correction, error) {
	n := cr.uvarint(uint64(ntok))
	cs := make([]correction, 0, n)
	next := -1
	for i := uint64(0); i < n; i++ {
		next += int(cr.uvarint(uint64(ntok))) + 1
		c := correction{index: next, rank: -1}
		l := cr.uvarint(maxMatch)
		c.tok.length = uint16(l)
		if l != 0 {
			c.rank = int(cr.uvarint(maxRankWalk)) - 1
			if c.rank < 0 {
				c.tok.dist = uint16(cr.uvarint(wSize))
				if c.tok.dist == 0 {
					return nil, fmt.Errorf("%w: correction distance 0", ErrCorrupt)
				}
			}
			if l < minMatch {
				return nil, fmt.Errorf("%w: correction length %d", ErrCorrupt, l)
			}
		}
		if cr.err != nil || next >= ntok {
			return nil, fmt.Errorf("%w: corrections", ErrCorrupt)
		}
		cs = append(cs, c)
	}
	return cs, cr.err
}

// readSegments decodes the segments section: block indexes rising from 1, at fixed or
// dynamic blocks, positions rising within the plain data.
func readSegments(sr *reader, blocks []block, n int) ([]segment, error) {
	// Split writes a segment per segmentSize of plain data; bound their number (each costs a
	// matcher) well above that.
	k := sr.uvarint(uint64(min(len(blocks), n/1024+1)))
	var segs []segment
	bi, pos := 0, 0
	for i := uint64(0); i < k; i++ {
		db := int(sr.uvarint(uint64(len(blocks))))
		dp := int(sr.uvarint(uint64(n)))
		v := sr.uvarint(2*maxMatch + 1)
		d := int(sr.uvarint(wSize))
		bi, pos = bi+db, pos+dp
		if sr.err != nil || db == 0 || dp == 0 || bi >= len(blocks) || pos > n || blocks[bi].typ == typeStored {
			return nil, fmt.Errorf("%w: segments", ErrCorrupt)
		}
		segs = append(segs, segment{block: bi, pos: pos, pendValid: v&1 != 0, pendLen: int(v >> 1), pendDist: d})
	}
	return segs, sr.err
}

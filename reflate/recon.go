package reflate

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
)

const (
	magic   = "RFL"
	version = 2

	methodGoFlate = 0 // the stream is Go compress/flate's output at a level: nothing else stored
	methodZlib    = 1 // zlib model plus corrections
	methodZlibNG  = 2 // zlib-ng model plus corrections, a whole one-chunk stream (zlibng.go)

	flagFinal     = 1 << 0
	flagTypeShift = 1
	flagRawTree   = 1 << 3
	flagPad       = 1 << 4
	flagOpen      = 1 << 5
	flagCont      = 1 << 6

	chunkLast      = 1 << 3
	chunkPendValid = 1 << 4

	bodyRaw      = 0
	bodyDeflated = 1

	// Bounds on a chunk record that Rebuild accepts, well above what Split writes
	// (chunkMax plus a stored block and a match; maxChunkBlocks plus the lookahead's).
	maxChunkPlain = 8 << 20
	maxRecBlocks  = 1 << 17
)

// ErrCorrupt is wrapped by every error about reconstruction data that cannot be used.
var ErrCorrupt = errors.New("reflate: corrupt reconstruction data")

// Split decodes the raw deflate stream at the start of src. It returns the plain data, the
// reconstruction data that Rebuild needs to make the stream again, and n, the number of bytes
// of src the stream occupies (what follows, such as a gzip trailer, is the caller's). Split
// checks its own work: every chunk of the stream is rebuilt from the reconstruction data and
// compared before Split returns.
func Split(src []byte) (plain, recon []byte, n int, err error) {
	var b bytes.Buffer
	recon, n64, err := splitStream(bytes.NewReader(src), &b, true)
	if err != nil {
		return nil, nil, 0, err
	}
	return b.Bytes(), recon, int(n64), nil
}

// SplitStream reads one raw deflate stream from r and writes its plain data to plain. It
// returns the reconstruction data and n, the number of bytes the stream occupies. When r is
// an io.ByteReader (a *bufio.Reader, a *bytes.Reader) SplitStream reads exactly those n bytes
// and r is left at the stream's end, so a caller finds the trailer of a gzip or zip member
// there; other readers are read through a bufio.Reader of SplitStream's own, which may read
// past the end (as compress/flate does). Memory is bounded whatever the stream's size: the
// stream is worked on in chunks of about 1 MiB of plain data.
func SplitStream(r io.Reader, plain io.Writer) (recon []byte, n int64, err error) {
	return splitStream(r, plain, true)
}

// splitStream is SplitStream; tests turn off the compress/flate path to exercise the model.
func splitStream(r io.Reader, plain io.Writer, tryGo bool) (recon []byte, n int64, err error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = bufio.NewReader(r)
	}
	p := &parser{br: &bitReader{r: br}}
	// The compress/flate check starts after the first chunk, and only if the zlib model did
	// not predict every token of it (as it does for zlib's own streams, which then need no
	// compress/flate runs): the first chunk's stream bytes are kept until then.
	var g *goCheck
	var firstBytes []byte
	p.sink = func(b []byte) {
		if g != nil {
			g.add(b)
		} else if tryGo && firstBytes != nil {
			firstBytes = append(firstBytes, b...)
		}
	}
	firstBytes = []byte{}
	var body bytes.Buffer
	fw, _ := flate.NewWriter(&body, flate.BestCompression)
	var (
		m        modelCfg
		plainLen int64
		pend     struct {
			valid     bool
			len, dist int
		}
		prevOpen *block
		rec      []byte
		whole    *chunk     // the stream when it is one chunk the zlib model missed tokens of
		raw      = []byte{} // the records as they are, while they are small
	)
	checked := make(chan error, 1)
	checking := false
	wait := func() error {
		if !checking {
			return nil
		}
		checking = false
		if err := <-checked; err != nil {
			return fmt.Errorf("reflate: checking the reconstruction: %w", err)
		}
		return nil
	}
	defer wait()
	for first := true; ; first = false {
		c, err := p.next()
		if err != nil {
			return nil, 0, fmt.Errorf("reflate: %w", err)
		}
		if c == nil {
			break
		}
		own := c.data[c.hist:c.end]
		if _, err := plain.Write(own); err != nil {
			return nil, 0, err
		}
		plainLen += int64(len(own))
		if first {
			m = detect(c)
		}
		c.pendValid, c.pendLen, c.pendDist = pend.valid, pend.len, pend.dist
		cs, z, _, err := corrections(c, m, c.end+1, len(c.tokens))
		if err != nil {
			return nil, 0, fmt.Errorf("reflate: %w", err)
		}
		pend.valid, pend.len, pend.dist = z.pendValid, z.pendLen, z.pendDist
		if first && len(cs) > 0 && tryGo {
			g = newGoCheck()
			g.add(firstBytes)
		}
		firstBytes = nil
		g.feed(own)
		if first && c.last && len(cs) > 0 {
			whole = c
		}
		rec = appendChunk(rec[:0], c, cs, m)
		// Check: rebuild the chunk from its record alone, while the next chunk is worked on.
		if err := wait(); err != nil {
			return nil, 0, err
		}
		checking = true
		go func(rec []byte, c *chunk, prevOpen *block) {
			rc, rcs, err := readChunk(&recReader{r: bytes.NewReader(rec)}, prevOpen)
			if err == nil {
				rc.place(c.data, c.hist)
				_, _, err = rebuildChunk(m, rc, rcs)
			}
			checked <- err
		}(bytes.Clone(rec), c, prevOpen)
		prevOpen = nil
		if nb := len(c.blocks); nb > 0 && c.blocks[nb-1].open {
			prevOpen = &c.blocks[nb-1]
		}
		fw.Write(rec)
		if raw != nil {
			if raw = append(raw, rec...); len(raw) > 64<<10 {
				raw = nil
			}
		}
	}
	fw.Close()
	if err := wait(); err != nil {
		return nil, 0, err
	}
	n = p.br.pos / 8
	out := append([]byte(magic), version)
	if level, ok := g.finish(n); ok {
		out = append(out, methodGoFlate, level)
		out = binary.AppendUvarint(out, uint64(n))
		out = binary.LittleEndian.AppendUint32(out, p.sum)
		return binary.AppendUvarint(out, uint64(plainLen)), n, nil
	}
	out = append(out, methodZlib, byte(m.level), byte(m.wbits), byte(m.memLevel))
	out = binary.AppendUvarint(out, uint64(n))
	out = binary.LittleEndian.AppendUint32(out, p.sum)
	out = binary.AppendUvarint(out, uint64(plainLen))
	if raw != nil && len(raw) <= body.Len() {
		out = append(out, bodyRaw)
		out = append(out, raw...)
	} else {
		out = append(out, bodyDeflated)
		out = append(out, body.Bytes()...)
	}
	if whole != nil {
		// A small stream, such as a 64 KiB VMDK grain or qcow2 cluster: Fedora's qemu-img
		// makes them with zlib-ng, which the zlib model misses a token in ten of.
		if ng := splitZlibNG(whole, n, p.sum, len(out)); ng != nil {
			out = ng
		}
	}
	return out, n, nil
}

// appendChunk appends the chunk's record: what Rebuild needs besides the plain data.
func appendChunk(b []byte, c *chunk, cs []correction, m modelCfg) []byte {
	b = binary.AppendUvarint(b, uint64(c.end-c.hist))
	f := c.phase
	if c.last {
		f |= chunkLast
	}
	if c.pendValid {
		f |= chunkPendValid
	}
	b = append(b, f)
	b = binary.LittleEndian.AppendUint32(b, c.crc)
	if c.pendValid {
		b = binary.AppendUvarint(b, uint64(c.pendLen))
		b = binary.AppendUvarint(b, uint64(c.pendDist))
	}
	b = binary.AppendUvarint(b, uint64(len(c.blocks)))
	tb := &treeBuilder{}
	var lf [286]int
	var df [30]int
	for _, bl := range c.blocks {
		f := bl.typ << flagTypeShift
		if bl.final {
			f |= flagFinal
		}
		if bl.open {
			f |= flagOpen
		}
		if bl.cont {
			f |= flagCont
		}
		if bl.typ == typeStored {
			if bl.pad != 0 {
				f |= flagPad
			}
			b = append(b, f)
			b = binary.AppendUvarint(b, uint64(bl.storedLen))
			if bl.pad != 0 {
				b = append(b, bl.pad)
			}
			continue
		}
		raw := false
		if bl.typ == typeDynamic && !bl.cont {
			// A block that goes on in the next chunk has symbol counts this chunk does not
			// know: its header is stored as written.
			raw = bl.open
			if !raw {
				blockFreqs(c.data, bl.pos, c.tokens[bl.tokStart:bl.tokEnd], &lf, &df)
				raw = !zlibHeader(tb, &lf, &df).equal(bl.hdr)
			}
		}
		if raw {
			f |= flagRawTree
		}
		b = append(b, f)
		b = binary.AppendUvarint(b, uint64(bl.tokEnd-bl.tokStart))
		if raw {
			b = appendRawHeader(b, bl.hdr)
		}
	}
	if c.last {
		b = append(b, c.endPad)
	}
	b = binary.AppendUvarint(b, uint64(len(c.restarts)))
	last := c.hist
	for _, r := range c.restarts {
		b = binary.AppendUvarint(b, uint64(r-last))
		last = r
	}
	b = binary.AppendUvarint(b, uint64(len(cs)))
	next := 0
	for _, x := range cs {
		b = binary.AppendUvarint(b, uint64(x.index-next))
		next = x.index + 1
		b = binary.AppendUvarint(b, uint64(x.tok.length))
		if x.tok.isMatch() {
			b = binary.AppendUvarint(b, uint64(x.rank+1))
			if x.rank < 0 {
				b = binary.AppendUvarint(b, uint64(x.tok.dist))
			}
		}
	}
	return b
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

// recReader decodes reconstruction data; every read is bounds-checked.
type recReader struct {
	r   io.ByteReader
	err error
}

func (r *recReader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(r.r)
	if err != nil || v > max {
		r.err = ErrCorrupt
		return 0
	}
	return v
}

func (r *recReader) byte() byte {
	if r.err != nil {
		return 0
	}
	c, err := r.r.ReadByte()
	if err != nil {
		r.err = ErrCorrupt
	}
	return c
}

func (r *recReader) u32() uint32 {
	var b [4]byte
	for i := range b {
		b[i] = r.byte()
	}
	return binary.LittleEndian.Uint32(b[:])
}

// readChunk decodes a chunk record. prevOpen is the previous chunk's last block if it goes
// on in this chunk. The chunk's data and hist are the caller's to set.
func readChunk(r *recReader, prevOpen *block) (*chunk, []correction, error) {
	n := int(r.uvarint(maxChunkPlain))
	f := r.byte()
	c := &chunk{phase: f & 7, last: f&chunkLast != 0, pendValid: f&chunkPendValid != 0}
	c.crc = r.u32()
	if c.pendValid {
		c.pendLen = int(r.uvarint(maxMatch))
		c.pendDist = int(r.uvarint(wSize))
	}
	nb := r.uvarint(maxRecBlocks)
	if r.err != nil {
		return nil, nil, fmt.Errorf("%w: chunk header", ErrCorrupt)
	}
	ntok := 0
	for i := uint64(0); i < nb && r.err == nil; i++ {
		f := r.byte()
		b := block{final: f&flagFinal != 0, typ: f >> flagTypeShift & 3, open: f&flagOpen != 0, cont: f&flagCont != 0, tokStart: ntok, tokEnd: ntok}
		if b.cont != (i == 0 && prevOpen != nil) || (b.open && (i != nb-1 || c.last)) || (b.cont && (b.typ != prevOpen.typ || b.final != prevOpen.final)) {
			return nil, nil, fmt.Errorf("%w: a block split between chunks", ErrCorrupt)
		}
		switch b.typ {
		case typeStored:
			if b.open || b.cont {
				return nil, nil, fmt.Errorf("%w: a stored block split between chunks", ErrCorrupt)
			}
			b.storedLen = int(r.uvarint(0xffff))
			if f&flagPad != 0 {
				b.pad = r.byte()
			}
		case typeFixed, typeDynamic:
			k := int(r.uvarint(uint64(n)))
			b.tokEnd = ntok + k
			ntok += k
			if b.typ == typeDynamic {
				if b.cont {
					b.hdr = prevOpen.hdr
				} else if f&flagRawTree != 0 {
					b.hdr = readRawHeader(r)
				} else if b.open {
					return nil, nil, fmt.Errorf("%w: a split block without its header", ErrCorrupt)
				}
			}
		default:
			return nil, nil, fmt.Errorf("%w: block type 3", ErrCorrupt)
		}
		if ntok > n {
			return nil, nil, fmt.Errorf("%w: more tokens than plain bytes", ErrCorrupt)
		}
		c.blocks = append(c.blocks, b)
	}
	if c.last {
		c.endPad = r.byte()
	}
	nr := r.uvarint(uint64(len(c.blocks)) + 1)
	last := 0
	for i := uint64(0); i < nr && r.err == nil; i++ {
		d := int(r.uvarint(uint64(n)))
		last += d
		if (d == 0 && i > 0) || last > n {
			return nil, nil, fmt.Errorf("%w: restart point %d", ErrCorrupt, last)
		}
		c.restarts = append(c.restarts, last)
	}
	if r.err != nil {
		return nil, nil, fmt.Errorf("%w: block list", ErrCorrupt)
	}
	cs, err := readCorrections(r, ntok)
	if err != nil {
		return nil, nil, err
	}
	c.tokens = make([]token, ntok)
	c.end = n // relative to hist until the caller sets it
	return c, cs, nil
}

func readRawHeader(r *recReader) *dynHeader {
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

// readCorrections decodes a chunk's corrections; every index is below ntok.
func readCorrections(cr *recReader, ntok int) ([]correction, error) {
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

// rebuildChunk runs the model over a chunk read from its record (data and hist set), applies
// the corrections, predicts the headers not stored and writes the chunk's bits. It checks
// them against the recorded CRC-32.
func rebuildChunk(m modelCfg, c *chunk, cs []correction) ([]byte, uint, error) {
	for i := 1; i < len(c.restarts); i++ {
		if c.restarts[i] <= c.restarts[i-1] {
			return nil, 0, fmt.Errorf("%w: restart points", ErrCorrupt)
		}
	}
	ci := 0
	_, err := runChunk(m, c, func(i, p int, pred token, z *matcher) (token, error) {
		t := pred
		if ci < len(cs) && cs[ci].index == i {
			x := cs[ci]
			ci++
			t = x.tok
			if x.rank >= 0 {
				if t.dist = uint16(z.byRank(p, int(t.length), x.rank)); t.dist == 0 {
					return t, fmt.Errorf("no match of rank %d", x.rank)
				}
			}
		}
		if t.isMatch() && (t.dist == 0 || int(t.dist) > p || p+int(t.length) > c.end) {
			return t, errors.New("match outside the plain data")
		}
		c.tokens[i] = t
		return t, nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if ci != len(cs) {
		return nil, 0, fmt.Errorf("%w: corrections past the chunk's tokens", ErrCorrupt)
	}
	placeBlocks(c.data, c.hist, c.blocks, c.tokens)
	out, tail, err := c.encode()
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if crc32.ChecksumIEEE(out) != c.crc {
		return nil, 0, errors.New("reflate: rebuilt chunk does not match its recorded CRC-32 (damaged plain or reconstruction data)")
	}
	return out, tail, nil
}

// header is the reconstruction data's header.
type header struct {
	method   byte
	goLevel  int
	m        modelCfg
	n        uint64 // bytes of the stream
	sum      uint32 // its CRC-32
	plainLen uint64
	coding   byte   // zlib model: how the body is coded
	body     []byte // zlib model: the chunk records; zlib-ng model: coding and body
	ngParam  byte   // zlib-ng model: level, windowBits and variant (zlibng.go)
}

func readHeader(recon []byte) (*header, error) {
	if !bytes.HasPrefix(recon, []byte(magic)) {
		return nil, fmt.Errorf("%w: no %q magic", ErrCorrupt, magic)
	}
	br := bytes.NewReader(recon[len(magic):])
	r := &recReader{r: br}
	switch v := r.byte(); v {
	case version:
	case 1:
		return nil, fmt.Errorf("%w: version 1 (the first, in-memory format; no recipe stored it): split the stream again", ErrCorrupt)
	default:
		return nil, fmt.Errorf("%w: version %d, want %d", ErrCorrupt, v, version)
	}
	h := &header{method: r.byte()}
	switch h.method {
	case methodGoFlate:
		h.goLevel = int(r.byte()) - 2
		if h.goLevel < -2 || h.goLevel > 9 {
			return nil, fmt.Errorf("%w: compress/flate level %d", ErrCorrupt, h.goLevel)
		}
	case methodZlib:
		h.m = modelCfg{int(r.byte()), int(r.byte()), int(r.byte())}
		if h.m.level < 1 || h.m.level > 9 || h.m.wbits < 9 || h.m.wbits > 15 || h.m.memLevel < 1 || h.m.memLevel > 9 {
			return nil, fmt.Errorf("%w: zlib level %d, windowBits %d, memLevel %d", ErrCorrupt, h.m.level, h.m.wbits, h.m.memLevel)
		}
	case methodZlibNG:
		h.ngParam = r.byte()
		if err := checkNGParam(h.ngParam); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: method %d", ErrCorrupt, h.method)
	}
	h.n = r.uvarint(1 << 50)
	h.sum = r.u32()
	h.plainLen = r.uvarint(1 << 50)
	if h.method == methodZlib {
		if h.coding = r.byte(); h.coding != bodyDeflated && h.coding != bodyRaw && r.err == nil {
			return nil, fmt.Errorf("%w: body coding %d", ErrCorrupt, h.coding)
		}
		h.body = recon[len(recon)-br.Len():]
	} else if h.method == methodZlibNG {
		// Rebuild holds the whole plain data: Split writes method 2 only for a one-chunk
		// stream, so anything larger than a chunk can be is damage.
		if h.plainLen > maxChunkPlain {
			return nil, fmt.Errorf("%w: zlib-ng model over %d plain bytes", ErrCorrupt, h.plainLen)
		}
		h.body = recon[len(recon)-br.Len():]
	} else if br.Len() != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the header", ErrCorrupt, br.Len())
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: header", ErrCorrupt)
	}
	return h, nil
}

// Rebuild makes the deflate stream again from its plain data and the reconstruction data
// Split returned. It never returns a stream that differs from the original: each chunk's
// CRC-32 and the whole stream's length and CRC-32 are checked.
func Rebuild(plain, recon []byte) ([]byte, error) {
	h, err := readHeader(recon)
	if err != nil {
		return nil, err
	}
	if h.plainLen != uint64(len(plain)) {
		return nil, fmt.Errorf("reflate: plain data is %d bytes, the reconstruction data is for %d", len(plain), h.plainLen)
	}
	var b bytes.Buffer
	b.Grow(int(min(h.n, uint64(len(plain))+1<<20)))
	if err := rebuild(&b, bytes.NewReader(plain), h); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// RebuildStream writes the deflate stream described by recon to w, reading its plain data
// from plain: exactly the plain data's length, which recon records (a shorter plain is an
// error; plain is not read further). Chunks are rebuilt on all cores, a few at a time, and
// each is checked against its CRC-32 before it is written, so a damaged recon or plain data
// stops the stream with an error before the first wrong chunk; the stream's length and
// CRC-32 are checked at its end.
func RebuildStream(w io.Writer, plain io.Reader, recon []byte) error {
	h, err := readHeader(recon)
	if err != nil {
		return err
	}
	return rebuild(w, plain, h)
}

func rebuild(w io.Writer, plain io.Reader, h *header) error {
	cw := &checkWriter{w: w, crc: crc32.NewIEEE()}
	lr := &io.LimitedReader{R: plain, N: int64(h.plainLen)}
	var err error
	switch h.method {
	case methodGoFlate:
		err = rebuildGo(cw, lr, h.goLevel)
	case methodZlibNG:
		err = rebuildNGStream(cw, lr, h)
	default:
		err = rebuildZlib(cw, lr, h)
	}
	if err != nil {
		return err
	}
	if lr.N != 0 {
		return fmt.Errorf("reflate: plain data is %d bytes short", lr.N)
	}
	if uint64(cw.n) != h.n || cw.crc.Sum32() != h.sum {
		return errors.New("reflate: rebuilt stream does not match its recorded length and CRC-32 (damaged plain or reconstruction data)")
	}
	return nil
}

type checkWriter struct {
	w   io.Writer
	n   int64
	crc interface {
		io.Writer
		Sum32() uint32
	}
}

func (c *checkWriter) Write(p []byte) (int, error) {
	c.crc.Write(p)
	c.n += int64(len(p))
	return c.w.Write(p)
}

// job is one chunk being rebuilt.
type job struct {
	c    *chunk
	cs   []correction
	out  []byte
	tail uint
	err  error
	done chan struct{}
}

func rebuildZlib(w io.Writer, plain io.Reader, h *header) error {
	workers := min(runtime.GOMAXPROCS(0), 4)
	queue := make(chan *job, workers)
	stop := make(chan struct{})
	sem := make(chan struct{}, workers)
	go func() {
		defer close(queue)
		var br *bufio.Reader
		if h.coding == bodyRaw {
			br = bufio.NewReaderSize(bytes.NewReader(h.body), 512)
		} else {
			br = bufio.NewReader(flate.NewReader(bytes.NewReader(h.body)))
		}
		r := &recReader{r: br}
		pr := bufio.NewReaderSize(plain, 1<<16)
		var hist []byte
		var prevOpen *block
		for {
			j := &job{done: make(chan struct{})}
			c, cs, err := readChunk(r, prevOpen)
			if err == nil {
				n := c.end
				c.hist = len(hist)
				c.data = make([]byte, len(hist)+n, len(hist)+n+lookahead)
				copy(c.data, hist)
				if _, err = io.ReadFull(pr, c.data[len(hist):]); err != nil {
					err = fmt.Errorf("reflate: plain data: %w", err)
				}
				look, _ := pr.Peek(lookahead)
				c.place(append(c.data, look...), c.hist)
				hist = append(hist[:0], c.data[max(0, c.end-histSize):c.end]...)
				prevOpen = nil
				if nb := len(c.blocks); nb > 0 && c.blocks[nb-1].open {
					prevOpen = &c.blocks[nb-1]
				}
				if _, e := r.r.ReadByte(); c.last && err == nil && e != io.EOF {
					err = fmt.Errorf("%w: records after the last chunk, or a truncated body", ErrCorrupt)
				} else if e == nil {
					br.UnreadByte()
				}
			}
			j.c, j.cs, j.err = c, cs, err
			select {
			case queue <- j:
			case <-stop:
				return
			}
			if err != nil {
				close(j.done)
				return
			}
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; close(j.done) }()
				j.out, j.tail, j.err = rebuildChunk(h.m, j.c, j.cs)
				j.cs = nil
			}()
			if c.last {
				return
			}
		}
	}()
	finish := func(err error) error {
		close(stop)
		for j := range queue {
			<-j.done
		}
		return err
	}
	var carry byte
	var carryBits uint
	last := false
	for j := range queue {
		<-j.done
		if j.err != nil {
			return finish(j.err)
		}
		out := j.out
		if uint(j.c.phase) != carryBits {
			return finish(fmt.Errorf("%w: a chunk starts at bit %d, the previous ended at %d", ErrCorrupt, j.c.phase, carryBits))
		}
		if carryBits > 0 && len(out) > 0 {
			out[0] |= carry
		}
		carryBits = j.tail
		if carryBits > 0 {
			carry = out[len(out)-1]
			out = out[:len(out)-1]
		}
		if _, err := w.Write(out); err != nil {
			return finish(err)
		}
		last = j.c.last
		j.c, j.out = nil, nil
	}
	if !last {
		return fmt.Errorf("%w: no last chunk", ErrCorrupt)
	}
	return nil
}

// place puts a chunk read from its record over its data: the history, the chunk's plain data
// and what follows it (up to lookahead bytes).
func (c *chunk) place(data []byte, hist int) {
	c.data, c.hist = data, hist
	c.end += hist
	for i := range c.restarts {
		c.restarts[i] += hist
	}
}

// placeBlocks sets each block's position in data, the first at start, from its stored length
// or its tokens, and gives each dynamic block whose header was not stored the header zlib's
// trees.c makes from the block's symbol counts. Rebuilding a chunk (both models) needs it.
func placeBlocks(data []byte, start int, blocks []block, tokens []token) {
	tb := &treeBuilder{}
	var lf [286]int
	var df [30]int
	pos := start
	for bi := range blocks {
		b := &blocks[bi]
		b.pos = pos
		if b.typ == typeStored {
			pos += b.storedLen
			continue
		}
		for _, t := range tokens[b.tokStart:b.tokEnd] {
			pos += max(1, int(t.length))
		}
		if b.typ == typeDynamic && b.hdr == nil {
			blockFreqs(data, b.pos, tokens[b.tokStart:b.tokEnd], &lf, &df)
			b.hdr = zlibHeader(tb, &lf, &df)
		}
	}
}

package reflate

import (
	"errors"
	"fmt"
	"hash/crc32"
)

var (
	// ErrInvalid is wrapped by every error about a malformed deflate stream.
	ErrInvalid     = errors.New("invalid deflate stream")
	errTruncated   = fmt.Errorf("%w: truncated", ErrInvalid)
	errInvalidCode = fmt.Errorf("%w: invalid Huffman code", ErrInvalid)
)

// token is one deflate symbol: a literal (length 0; its byte is the plain data's) or a match.
type token struct {
	length uint16 // 0 for a literal, else 3..258
	dist   uint16 // 1..32768 for a match
}

func (t token) isMatch() bool { return t.length != 0 }

// clSym is one code length code symbol of a dynamic block header as written, with its extra
// bits (the repeat count) for symbols 16, 17 and 18.
type clSym struct {
	sym, extra uint8
}

// dynHeader is a dynamic block's header exactly as written.
type dynHeader struct {
	hlit, hdist, hclen int // number of literal/length, distance and code length code lengths
	clLens             [numCodeLen]uint8
	seq                []clSym
	litLens            [288]uint8
	distLens           [32]uint8
}

const (
	typeStored  = 0
	typeFixed   = 1
	typeDynamic = 2
)

// block is a deflate block, or the part of one that lies in a chunk.
type block struct {
	final     bool
	typ       uint8
	pos       int // where the block (part) starts in its chunk's data
	storedLen int
	pad       uint8 // stored block: the bits that align it to a byte, as written (usually 0)
	tokStart  int   // fixed/dynamic: its tokens are chunk.tokens[tokStart:tokEnd]
	tokEnd    int
	hdr       *dynHeader
	open      bool // the block goes on in the next chunk (no end-of-block code here)
	cont      bool // the block began in the previous chunk (no block header here)
}

// Chunk sizes: a chunk ends at the first block end after chunkTarget bytes of plain data, or
// inside a block at chunkMax bytes, or after maxChunkBlocks blocks (variables for tests).
var (
	chunkTarget    = 1 << 20
	chunkMax       = 2 << 20
	maxChunkBlocks = 1 << 15
)

// lookahead is how much plain data past a chunk's end its model reads (zlib's MIN_LOOKAHEAD).
const lookahead = maxMatch + minMatch + 1

// histSize is how much plain data before a chunk its model reads: deflate's largest window,
// twice (at fast levels the model runs over the first half to fill the chains for the second).
const histSize = 2 << 15

// chunk is a piece of a deflate stream that ends at a token boundary, with the plain data
// around it that its model needs.
type chunk struct {
	data      []byte // history, the chunk's own plain data, then up to lookahead bytes after
	hist      int    // the chunk's plain data is data[hist:end]
	end       int
	blocks    []block
	tokens    []token
	restarts  []int // restart points in [hist, end], rising
	pendValid bool  // the model's lazy evaluation state at the chunk's start
	pendLen   int
	pendDist  int
	phase     uint8 // the bit offset within its first byte at which the chunk starts
	last      bool  // the chunk ends the stream (after the final block and endPad)
	endPad    uint8 // the bits after the final block up to the byte boundary, as written
	crc       uint32
}

// cutPoint is where the pending chunk will end.
type cutPoint struct {
	nblocks int // blocks before the cut; a cut inside a block is in blocks[nblocks]
	ntok    int
	pos     int
	bit     int64
	mid     bool
}

// parser decodes a deflate stream into chunks.
type parser struct {
	br       *bitReader
	plain    []byte // history then the pending plain data
	hist     int
	blocks   []block // blocks (parts) of the pending chunk; the last may be in progress
	tokens   []token
	inBlock  bool
	lit      *decoder
	dist     *decoder
	done     bool
	endPad   uint8
	cut      *cutPoint
	startBit int64        // stream bit where the pending chunk starts
	base     int64        // stream offset of plain[hist]
	sum      uint32       // CRC-32 of the stream's bytes before br.raw
	sink     func([]byte) // gets the stream's bytes as they leave br.raw
}

// next returns the next chunk, or nil after the last.
func (p *parser) next() (*chunk, error) {
	if p.done && len(p.blocks) == 0 {
		return nil, nil
	}
	for !p.done && (p.cut == nil || len(p.plain)-p.cut.pos < lookahead) {
		if err := p.step(); err != nil {
			return nil, err
		}
	}
	cut := p.cut
	if cut == nil {
		cut = &cutPoint{nblocks: len(p.blocks), ntok: len(p.tokens), pos: len(p.plain), bit: p.br.pos}
	}
	c := &chunk{hist: p.hist, end: cut.pos, phase: uint8(p.startBit & 7)}
	look := min(len(p.plain), cut.pos+lookahead)
	c.data = append([]byte(nil), p.plain[:look]...)
	c.tokens = append([]token(nil), p.tokens[:cut.ntok]...)
	c.blocks = append([]block(nil), p.blocks[:cut.nblocks]...)
	if cut.mid {
		b := p.blocks[cut.nblocks]
		b.tokEnd, b.open = cut.ntok, true
		c.blocks = append(c.blocks, b)
	}
	if p.cut == nil {
		c.last, c.endPad = true, p.endPad
	}
	c.restarts = p.restarts(c, cut)
	c.crc = p.crc(cut.bit)

	// Keep what follows the cut, behind a new history.
	nh := min(cut.pos, histSize)
	shift := cut.pos - nh
	p.blocks = append([]block(nil), p.blocks[cut.nblocks:]...)
	for i := range p.blocks {
		b := &p.blocks[i]
		b.pos -= shift
		b.tokStart -= cut.ntok
		b.tokEnd -= cut.ntok
		if i == 0 && cut.mid {
			b.pos, b.tokStart, b.cont = nh, 0, true
		}
	}
	p.tokens = append(p.tokens[:0], p.tokens[cut.ntok:]...)
	p.plain = append(p.plain[:0], p.plain[shift:]...)
	p.base += int64(cut.pos - p.hist)
	p.hist = nh
	p.startBit = cut.bit
	p.cut = nil
	if c.last {
		p.blocks = nil
	}
	return c, nil
}

func (p *parser) cutDue(nblocks, pos int) bool {
	return pos-p.hist >= chunkTarget || nblocks >= maxChunkBlocks
}

// crc is the CRC-32 of the chunk's bytes from p.startBit to bit end, the bits outside it zero.
func (p *parser) crc(end int64) uint32 {
	br := p.br
	first := p.startBit / 8
	last := (end + 7) / 8
	b := append([]byte(nil), br.raw[first-br.base:last-br.base]...)
	if len(b) > 0 {
		b[0] &^= byte(1<<(p.startBit&7) - 1)
		if end&7 != 0 {
			b[len(b)-1] &= byte(1<<(end&7) - 1)
		}
	}
	keep := end / 8
	done := br.raw[:keep-br.base]
	p.sum = crc32.Update(p.sum, crc32.IEEETable, done)
	if p.sink != nil {
		p.sink(done)
	}
	br.raw = append(br.raw[:0], br.raw[keep-br.base:]...)
	br.base = keep
	return crc32.ChecksumIEEE(b)
}

// restarts guesses where the producer started a new deflate stream over the same data
// (pigz's independent 128 KiB pieces): at empty blocks, which pigz writes to end a piece on a
// byte boundary, and at block starts on a 64 KiB multiple of the plain data. A restart at the
// chunk's end (the next chunk's first block) is listed too: it bounds the model's data.
func (p *parser) restarts(c *chunk, cut *cutPoint) []int {
	var rs []int
	add := func(b block, pos int) {
		abs := p.base + int64(pos-p.hist)
		empty := (b.typ == typeStored && b.storedLen == 0) || (b.typ != typeStored && b.tokStart == b.tokEnd)
		if b.cont || abs == 0 || (c.last && pos == c.end) || !(empty || abs%(64<<10) == 0) {
			return
		}
		if len(rs) == 0 || rs[len(rs)-1] != pos {
			rs = append(rs, pos)
		}
	}
	for _, b := range c.blocks {
		add(b, b.pos)
	}
	if !cut.mid && cut.nblocks < len(p.blocks) {
		// Parsed lookahead bytes further: an empty one has ended, one in progress has tokens.
		add(p.blocks[cut.nblocks], cut.pos)
	}
	return rs
}

// step parses one block header, stored block or a run of tokens.
func (p *parser) step() error {
	r := p.br
	if p.inBlock {
		return p.tokensStep()
	}
	start := r.pos
	hdr, err := r.bits(3)
	if err != nil {
		return err
	}
	b := block{final: hdr&1 != 0, typ: uint8(hdr >> 1), pos: len(p.plain), tokStart: len(p.tokens), tokEnd: len(p.tokens)}
	switch b.typ {
	case typeStored:
		if err := p.stored(&b); err != nil {
			return err
		}
		p.blocks = append(p.blocks, b)
		return p.endBlock()
	case typeFixed, typeDynamic:
		lit, dist := fixedLitLen[:], fixedDist[:]
		if b.typ == typeDynamic {
			h, err := parseDynHeader(r)
			if err != nil {
				return err
			}
			b.hdr = h
			lit, dist = h.litLens[:h.hlit], h.distLens[:h.hdist]
		}
		at := r.pos
		if p.lit, err = newDecoder(lit); err != nil {
			return fmt.Errorf("%w: literal/length code: %v at bit %d", ErrInvalid, err, at)
		}
		p.dist = nil
		for _, l := range dist {
			if l != 0 {
				if p.dist, err = newDecoder(dist); err != nil {
					return fmt.Errorf("%w: distance code: %v at bit %d", ErrInvalid, err, at)
				}
				break
			}
		}
		p.blocks = append(p.blocks, b)
		p.inBlock = true
		return nil
	default:
		return fmt.Errorf("%w: reserved block type 3 at bit %d", ErrInvalid, start)
	}
}

// endBlock follows the end of the last block: the padding after the final one, or a cut.
func (p *parser) endBlock() error {
	b := &p.blocks[len(p.blocks)-1]
	b.tokEnd = len(p.tokens)
	if b.final {
		n := uint((8 - p.br.pos%8) % 8)
		pad, err := p.br.bits(n)
		if err != nil {
			return err
		}
		p.endPad = uint8(pad)
		p.done = true
		return nil
	}
	if p.cut == nil && p.cutDue(len(p.blocks), len(p.plain)) {
		p.cut = &cutPoint{nblocks: len(p.blocks), ntok: len(p.tokens), pos: len(p.plain), bit: p.br.pos}
	}
	return nil
}

func (p *parser) stored(b *block) error {
	r := p.br
	pad, err := r.bits(uint((8 - r.pos%8) % 8))
	if err != nil {
		return err
	}
	b.pad = uint8(pad)
	at := r.pos
	lens, err := r.bits(16)
	if err != nil {
		return err
	}
	nlen, err := r.bits(16)
	if err != nil {
		return err
	}
	if lens != ^nlen&0xffff {
		return fmt.Errorf("%w: stored block length %d does not match its complement at bit %d", ErrInvalid, lens, at)
	}
	b.storedLen = int(lens)
	for i := 0; i < int(lens); i++ {
		c, err := r.alignedByte()
		if err != nil {
			return err
		}
		p.plain = append(p.plain, c)
	}
	return nil
}

func parseDynHeader(r *bitReader) (*dynHeader, error) {
	at := r.pos
	v, err := r.bits(14)
	if err != nil {
		return nil, err
	}
	h := &dynHeader{hlit: int(v&31) + 257, hdist: int(v>>5&31) + 1, hclen: int(v>>10) + 4}
	if h.hlit > numLitLen || h.hdist > numDist {
		return nil, fmt.Errorf("%w: %d literal/length or %d distance codes at bit %d", ErrInvalid, h.hlit, h.hdist, at)
	}
	for i := 0; i < h.hclen; i++ {
		l, err := r.bits(3)
		if err != nil {
			return nil, err
		}
		h.clLens[clOrder[i]] = uint8(l)
	}
	cl, err := newDecoder(h.clLens[:])
	if err != nil {
		return nil, fmt.Errorf("%w: code length code: %v at bit %d", ErrInvalid, err, at)
	}
	var lens [288 + 32]uint8
	n := h.hlit + h.hdist
	for i := 0; i < n; {
		at := r.pos
		sym, err := cl.decode(r)
		if err != nil {
			return nil, fmt.Errorf("%w at bit %d", err, at)
		}
		c := clSym{sym: uint8(sym)}
		rep, val := 1, uint8(sym)
		switch sym {
		case 16:
			if i == 0 {
				return nil, fmt.Errorf("%w: repeat with no previous length at bit %d", ErrInvalid, at)
			}
			x, err := r.bits(2)
			if err != nil {
				return nil, err
			}
			c.extra, rep, val = uint8(x), 3+int(x), lens[i-1]
		case 17:
			x, err := r.bits(3)
			if err != nil {
				return nil, err
			}
			c.extra, rep, val = uint8(x), 3+int(x), 0
		case 18:
			x, err := r.bits(7)
			if err != nil {
				return nil, err
			}
			c.extra, rep, val = uint8(x), 11+int(x), 0
		}
		if i+rep > n {
			return nil, fmt.Errorf("%w: code lengths overrun at bit %d", ErrInvalid, at)
		}
		for ; rep > 0; rep-- {
			lens[i] = val
			i++
		}
		h.seq = append(h.seq, c)
	}
	copy(h.litLens[:], lens[:h.hlit])
	copy(h.distLens[:], lens[h.hlit:n])
	if h.litLens[endBlock] == 0 {
		return nil, fmt.Errorf("%w: no code for end of block at bit %d", ErrInvalid, at)
	}
	return h, nil
}

// tokensStep decodes tokens of the block in progress until its end, a cut inside it, or a
// few thousand tokens (so that next sees a due cut soon).
func (p *parser) tokensStep() error {
	r := p.br
	b := &p.blocks[len(p.blocks)-1]
	defer func() { b.tokEnd = len(p.tokens) }()
	for k := 0; k < 4096 && (p.cut == nil || len(p.plain)-p.cut.pos < lookahead); k++ {
		at := r.pos
		sym, err := p.lit.decode(r)
		if err != nil {
			return fmt.Errorf("%w at bit %d", err, at)
		}
		if sym < 256 {
			p.plain = append(p.plain, byte(sym))
			p.tokens = append(p.tokens, token{})
		} else if sym == endBlock {
			p.inBlock = false
			b.tokEnd = len(p.tokens)
			return p.endBlock()
		} else {
			sym -= 257
			if sym >= 29 {
				return fmt.Errorf("%w: length symbol %d at bit %d", ErrInvalid, sym+257, at)
			}
			x, err := r.bits(uint(lengthExtra[sym]))
			if err != nil {
				return err
			}
			length := int(lengthBase[sym]) + int(x)
			if length == 258 && sym == 27 {
				// 258 written as symbol 284 with all extra bits set: valid for some inflaters
				// but not representable as a token that re-encodes the same way.
				return fmt.Errorf("%w: length 258 coded as symbol 284 at bit %d", errors.ErrUnsupported, at)
			}
			if p.dist == nil {
				return fmt.Errorf("%w: match in a block without distance codes at bit %d", ErrInvalid, at)
			}
			at = r.pos
			ds, err := p.dist.decode(r)
			if err != nil {
				return fmt.Errorf("%w at bit %d", err, at)
			}
			if ds >= numDist {
				return fmt.Errorf("%w: distance symbol %d at bit %d", ErrInvalid, ds, at)
			}
			x, err = r.bits(uint(distExtra[ds]))
			if err != nil {
				return err
			}
			d := int(distBase[ds]) + int(x)
			if int64(d) > p.base+int64(len(p.plain)-p.hist) {
				return fmt.Errorf("%w: distance %d beyond the start of the data at bit %d", ErrInvalid, d, at)
			}
			q := len(p.plain)
			for i := 0; i < length; i++ {
				p.plain = append(p.plain, p.plain[q-d+i])
			}
			p.tokens = append(p.tokens, token{length: uint16(length), dist: uint16(d)})
		}
		if p.cut == nil && len(p.plain)-p.hist >= chunkMax {
			b.tokEnd = len(p.tokens)
			p.cut = &cutPoint{nblocks: len(p.blocks) - 1, ntok: len(p.tokens), pos: len(p.plain), bit: r.pos, mid: true}
		}
	}
	return nil
}

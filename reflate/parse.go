package reflate

import (
	"errors"
	"fmt"
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

type block struct {
	final     bool
	typ       uint8
	pos       int // plain offset where the block starts
	storedLen int
	pad       uint8 // stored block: the bits that align it to a byte, as written (usually 0)
	tokStart  int   // fixed/dynamic: its tokens are stream.tokens[tokStart:tokEnd]
	tokEnd    int
	hdr       *dynHeader
}

// stream is a parsed deflate stream.
type stream struct {
	blocks  []block
	tokens  []token
	plain   []byte
	endPad  uint8 // the bits after the final block up to the byte boundary, as written
	nbytes  int   // bytes of input the stream occupies
	maxDist int   // longest distance used
}

// parse decodes the raw deflate stream at the start of src.
func parse(src []byte) (*stream, error) {
	s := &stream{}
	r := &bitReader{data: src}
	for {
		start := r.pos
		hdr, err := r.bits(3)
		if err != nil {
			return nil, err
		}
		b := block{final: hdr&1 != 0, typ: uint8(hdr >> 1), pos: len(s.plain)}
		switch b.typ {
		case typeStored:
			if err := parseStored(r, s, &b); err != nil {
				return nil, err
			}
		case typeFixed, typeDynamic:
			lit, dist := fixedLitLen[:], fixedDist[:]
			if b.typ == typeDynamic {
				h, err := parseDynHeader(r)
				if err != nil {
					return nil, err
				}
				b.hdr = h
				lit, dist = h.litLens[:h.hlit], h.distLens[:h.hdist]
			}
			if err := parseTokens(r, s, &b, lit, dist); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: reserved block type 3 at bit %d", ErrInvalid, start)
		}
		s.blocks = append(s.blocks, b)
		if b.final {
			break
		}
	}
	n := (8 - r.pos%8) % 8
	pad, err := r.bits(n)
	if err != nil {
		return nil, err
	}
	s.endPad = uint8(pad)
	s.nbytes = r.pos / 8
	return s, nil
}

func parseStored(r *bitReader, s *stream, b *block) error {
	n := (8 - r.pos%8) % 8
	pad, err := r.bits(n)
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
	i := r.pos / 8
	if i+int(lens) > len(r.data) {
		return fmt.Errorf("%w at bit %d", errTruncated, r.pos)
	}
	b.storedLen = int(lens)
	s.plain = append(s.plain, r.data[i:i+int(lens)]...)
	r.pos += 8 * int(lens)
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

func parseTokens(r *bitReader, s *stream, b *block, litLens, distLens []uint8) error {
	at := r.pos
	lit, err := newDecoder(litLens)
	if err != nil {
		return fmt.Errorf("%w: literal/length code: %v at bit %d", ErrInvalid, err, at)
	}
	var dist *decoder
	hasDist := false
	for _, l := range distLens {
		hasDist = hasDist || l != 0
	}
	if hasDist {
		if dist, err = newDecoder(distLens); err != nil {
			return fmt.Errorf("%w: distance code: %v at bit %d", ErrInvalid, err, at)
		}
	}
	b.tokStart = len(s.tokens)
	for {
		at := r.pos
		sym, err := lit.decode(r)
		if err != nil {
			return fmt.Errorf("%w at bit %d", err, at)
		}
		if sym < 256 {
			s.plain = append(s.plain, byte(sym))
			s.tokens = append(s.tokens, token{})
			continue
		}
		if sym == endBlock {
			break
		}
		sym -= 257
		if sym >= 29 {
			return fmt.Errorf("%w: length symbol %d at bit %d", ErrInvalid, sym+257, at)
		}
		x, err := r.bits(int(lengthExtra[sym]))
		if err != nil {
			return err
		}
		length := int(lengthBase[sym]) + int(x)
		if length == 258 && sym == 27 {
			// 258 written as symbol 284 with all extra bits set: valid for some inflaters but
			// not representable as a token that re-encodes the same way.
			return fmt.Errorf("%w: length 258 coded as symbol 284 at bit %d", errors.ErrUnsupported, at)
		}
		if dist == nil {
			return fmt.Errorf("%w: match in a block without distance codes at bit %d", ErrInvalid, at)
		}
		at = r.pos
		ds, err := dist.decode(r)
		if err != nil {
			return fmt.Errorf("%w at bit %d", err, at)
		}
		if ds >= numDist {
			return fmt.Errorf("%w: distance symbol %d at bit %d", ErrInvalid, ds, at)
		}
		x, err = r.bits(int(distExtra[ds]))
		if err != nil {
			return err
		}
		d := int(distBase[ds]) + int(x)
		if d > len(s.plain) {
			return fmt.Errorf("%w: distance %d beyond the start of the data at bit %d", ErrInvalid, d, at)
		}
		s.maxDist = max(s.maxDist, d)
		p := len(s.plain)
		for k := 0; k < length; k++ {
			s.plain = append(s.plain, s.plain[p-d+k])
		}
		s.tokens = append(s.tokens, token{length: uint16(length), dist: uint16(d)})
	}
	b.tokEnd = len(s.tokens)
	return nil
}

package reflate

import (
	"errors"
	"fmt"
)

var errUnencodable = errors.New("token has no code in its block's Huffman code")

// encode writes the chunk's blocks bit for bit, starting at bit c.phase of the first byte
// (the bits below it zero). It returns the bytes and how many bits of the last one belong to
// the chunk (0: all 8).
func (c *chunk) encode() ([]byte, uint, error) {
	return c.encodeTo(make([]byte, 0, (c.end-c.hist)/2+64))
}

// encodeTo is encode appending to buf (of length 0), whose memory it reuses.
func (c *chunk) encodeTo(buf []byte) ([]byte, uint, error) {
	w := &bitWriter{out: buf, nacc: uint(c.phase)}
	pos := c.hist
	for bi := range c.blocks {
		b := &c.blocks[bi]
		if !b.cont {
			h := uint32(b.typ) << 1
			if b.final {
				h |= 1
			}
			w.write(h, 3)
		}
		switch b.typ {
		case typeStored:
			w.align(b.pad)
			w.write(uint32(b.storedLen), 16)
			w.write(uint32(^b.storedLen&0xffff), 16)
			w.flush()
			if pos+b.storedLen > c.end {
				return nil, 0, fmt.Errorf("block %d: stored data past the chunk's end", bi)
			}
			w.out = append(w.out, c.data[pos:pos+b.storedLen]...)
			pos += b.storedLen
		case typeFixed, typeDynamic:
			lit, dist := fixedLitLen[:], fixedDist[:]
			if b.typ == typeDynamic {
				if b.hdr == nil {
					return nil, 0, fmt.Errorf("block %d: no header", bi)
				}
				if !b.cont {
					if err := writeDynHeader(w, b.hdr); err != nil {
						return nil, 0, fmt.Errorf("block %d: %w", bi, err)
					}
				}
				lit, dist = b.hdr.litLens[:b.hdr.hlit], b.hdr.distLens[:b.hdr.hdist]
			}
			var err error
			if pos, err = writeTokens(w, c.data[:c.end], pos, c.tokens[b.tokStart:b.tokEnd], lit, dist, !b.open); err != nil {
				return nil, 0, fmt.Errorf("block %d: %w", bi, err)
			}
		default:
			return nil, 0, fmt.Errorf("block %d: type %d", bi, b.typ)
		}
	}
	if pos != c.end {
		return nil, 0, fmt.Errorf("blocks cover %d of %d plain bytes", pos-c.hist, c.end-c.hist)
	}
	if c.last {
		w.align(c.endPad)
	}
	w.flush()
	tail := w.nacc
	if tail > 0 {
		w.out = append(w.out, byte(w.acc))
	}
	return w.out, tail, nil
}

func writeDynHeader(w *bitWriter, h *dynHeader) error {
	w.write(uint32(h.hlit-257)|uint32(h.hdist-1)<<5|uint32(h.hclen-4)<<10, 14)
	for i := 0; i < h.hclen; i++ {
		w.write(uint32(h.clLens[clOrder[i]]), 3)
	}
	codes, err := canonicalCodes(h.clLens[:])
	if err != nil {
		return err
	}
	for _, c := range h.seq {
		l := h.clLens[c.sym]
		if l == 0 {
			return errUnencodable
		}
		w.write(uint32(codes[c.sym]), uint(l))
		switch c.sym {
		case 16:
			w.write(uint32(c.extra), 2)
		case 17:
			w.write(uint32(c.extra), 3)
		case 18:
			w.write(uint32(c.extra), 7)
		}
	}
	return nil
}

// writeTokens writes toks from position pos of plain, then the end-of-block code if eob.
func writeTokens(w *bitWriter, plain []byte, pos int, toks []token, litLens, distLens []uint8, eob bool) (int, error) {
	lc, err := canonicalCodes(litLens)
	if err != nil {
		return pos, err
	}
	dc, err := canonicalCodes(distLens)
	if err != nil {
		return pos, err
	}
	for _, t := range toks {
		if !t.isMatch() {
			if pos >= len(plain) {
				return pos, errors.New("literal past the end of the plain data")
			}
			c := plain[pos]
			if litLens[c] == 0 {
				return pos, errUnencodable
			}
			w.write(uint32(lc[c]), uint(litLens[c]))
			pos++
			continue
		}
		if int(t.length) > maxMatch || t.length < minMatch || t.dist == 0 || int(t.dist) > wSize {
			return pos, errUnencodable
		}
		ls := int(lengthCode[t.length])
		ds := int(distCode[t.dist])
		if 257+ls >= len(litLens) || litLens[257+ls] == 0 || ds >= len(distLens) || distLens[ds] == 0 {
			return pos, errUnencodable
		}
		w.write(uint32(lc[257+ls]), uint(litLens[257+ls]))
		w.write(uint32(t.length-lengthBase[ls]), uint(lengthExtra[ls]))
		w.write(uint32(dc[ds]), uint(distLens[ds]))
		w.write(uint32(t.dist-distBase[ds]), uint(distExtra[ds]))
		pos += int(t.length)
		if pos > len(plain) {
			return pos, errors.New("match past the end of the plain data")
		}
	}
	if !eob {
		return pos, nil
	}
	if len(litLens) <= endBlock || litLens[endBlock] == 0 {
		return pos, errUnencodable
	}
	w.write(uint32(lc[endBlock]), uint(litLens[endBlock]))
	return pos, nil
}

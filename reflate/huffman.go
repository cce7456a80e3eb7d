package reflate

import (
	"errors"
	"math/bits"
)

const (
	maxBits    = 15  // longest literal/length or distance code
	numLitLen  = 286 // literal/length symbols a valid stream uses (286, 287 are reserved)
	numDist    = 30  // distance symbols a valid stream uses
	numCodeLen = 19  // code length code symbols
	endBlock   = 256
)

// clOrder is the order in which a dynamic header lists the code length code's lengths.
var clOrder = [numCodeLen]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

var (
	lengthBase  [29]uint16
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase    [30]uint16
	distExtra   = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	lengthCode  [259]uint8   // match length -> length symbol - 257
	distCode    [32769]uint8 // distance -> distance symbol

	fixedLitLen [288]uint8
	fixedDist   [30]uint8
)

func init() {
	b := uint16(3)
	for i := 0; i < 28; i++ {
		lengthBase[i] = b
		b += 1 << lengthExtra[i]
	}
	lengthBase[28] = 258
	for l := 3; l <= 258; l++ {
		c := 0
		for c+1 < 29 && int(lengthBase[c+1]) <= l {
			c++
		}
		lengthCode[l] = uint8(c)
	}
	// 258 has its own symbol (285); zlib never codes it as 284 with all extra bits set.
	lengthCode[258] = 28
	b = 1
	for i := 0; i < 30; i++ {
		distBase[i] = b
		b += 1 << distExtra[i]
	}
	for d := 1; d <= 32768; d++ {
		c := 0
		for c+1 < 30 && int(distBase[c+1]) <= d {
			c++
		}
		distCode[d] = uint8(c)
	}
	for i := range fixedLitLen {
		switch {
		case i < 144:
			fixedLitLen[i] = 8
		case i < 256:
			fixedLitLen[i] = 9
		case i < 280:
			fixedLitLen[i] = 7
		default:
			fixedLitLen[i] = 8
		}
	}
	for i := range fixedDist {
		fixedDist[i] = 5
	}
}

var (
	errOversubscribed = errors.New("over-subscribed Huffman code")
	errNoCodes        = errors.New("empty Huffman code")
)

// canonicalCodes returns each symbol's code, bit-reversed so that it can be written least
// significant bit first, and checks that the lengths form a prefix code (incomplete codes are
// allowed: inflate accepts them and some producers write them).
func canonicalCodes(lens []uint8) ([]uint16, error) {
	var count [maxBits + 1]int
	for _, l := range lens {
		count[l]++
	}
	count[0] = 0
	left := 1
	for b := 1; b <= maxBits; b++ {
		left = left<<1 - count[b]
		if left < 0 {
			return nil, errOversubscribed
		}
	}
	var next [maxBits + 2]int
	code := 0
	for b := 1; b <= maxBits; b++ {
		code = (code + count[b-1]) << 1
		next[b] = code
	}
	codes := make([]uint16, len(lens))
	for s, l := range lens {
		if l == 0 {
			continue
		}
		c := next[l]
		next[l]++
		codes[s] = bits.Reverse16(uint16(c)) >> (16 - l)
	}
	return codes, nil
}

// decoder is a single-level lookup table over the next tableBits bits of the stream.
type decoder struct {
	tableBits int
	table     []uint32 // symbol<<4 | length; 0 = no code
}

func newDecoder(lens []uint8) (*decoder, error) {
	codes, err := canonicalCodes(lens)
	if err != nil {
		return nil, err
	}
	maxLen := 0
	for _, l := range lens {
		maxLen = max(maxLen, int(l))
	}
	if maxLen == 0 {
		return nil, errNoCodes
	}
	d := &decoder{tableBits: maxLen, table: make([]uint32, 1<<maxLen)}
	for s, l := range lens {
		if l == 0 {
			continue
		}
		for i := int(codes[s]); i < len(d.table); i += 1 << l {
			d.table[i] = uint32(s)<<4 | uint32(l)
		}
	}
	return d, nil
}

// decode reads one symbol, reading a byte more only while the bits at hand do not hold a
// whole code (a code found among fewer bits than the table's is that code: codes are
// prefix-free), so it never reads past the code's last byte.
func (d *decoder) decode(r *bitReader) (int, error) {
	mask := uint64(1)<<d.tableBits - 1
	for {
		e := d.table[r.buf&mask]
		if e != 0 && uint(e&15) <= r.nb {
			n := uint(e & 15)
			r.buf >>= n
			r.nb -= n
			r.pos += int64(n)
			return int(e >> 4), nil
		}
		if r.nb >= uint(d.tableBits) {
			return 0, errInvalidCode
		}
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
}

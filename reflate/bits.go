package reflate

import "fmt"

// bitReader reads a deflate bit stream: least significant bit first within each byte.
type bitReader struct {
	data []byte
	pos  int // bit position of the next unread bit
}

// peek returns the next 32 bits without consuming them; bits past the end read as zero, and
// consume reports reading past the end as an error.
func (r *bitReader) peek() uint32 {
	i := r.pos >> 3
	var v uint64
	if i+8 <= len(r.data) {
		v = uint64(r.data[i]) | uint64(r.data[i+1])<<8 | uint64(r.data[i+2])<<16 | uint64(r.data[i+3])<<24 |
			uint64(r.data[i+4])<<32 | uint64(r.data[i+5])<<40 | uint64(r.data[i+6])<<48 | uint64(r.data[i+7])<<56
	} else {
		for k := 0; k < 8 && i+k < len(r.data); k++ {
			v |= uint64(r.data[i+k]) << (8 * k)
		}
	}
	return uint32(v >> (uint(r.pos) & 7))
}

func (r *bitReader) consume(n int) error {
	if r.pos+n > len(r.data)*8 {
		return fmt.Errorf("%w at bit %d", errTruncated, r.pos)
	}
	r.pos += n
	return nil
}

// bits reads n <= 24 bits as an unsigned number.
func (r *bitReader) bits(n int) (uint32, error) {
	v := r.peek() & (1<<n - 1)
	return v, r.consume(n)
}

// bitWriter writes a deflate bit stream.
type bitWriter struct {
	out  []byte
	acc  uint64
	nacc uint
}

func (w *bitWriter) write(v uint32, n uint) {
	w.acc |= uint64(v) << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

// align pads to a byte boundary with the given padding bits (low bits first) and returns
// how many bits were added.
func (w *bitWriter) align(pad byte) uint {
	n := (8 - w.nacc%8) % 8
	if n > 0 {
		w.write(uint32(pad), n)
	}
	return n
}

func (w *bitWriter) bitLen() int { return len(w.out)*8 + int(w.nacc) }

package reflate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// bitReader reads a deflate bit stream (least significant bit first within each byte) from
// an io.ByteReader, one byte at a time and only when a bit of it is needed, so that it never
// reads past the stream's last byte. Every byte read is also appended to raw (the caller
// trims it) for the reconstruction data's checksums.
type bitReader struct {
	r    io.ByteReader
	buf  uint64
	nb   uint  // bits in buf (always < 8 between calls, see fill)
	pos  int64 // bit position of the next unread bit
	raw  []byte
	base int64 // stream offset of raw[0]
	tee  func(byte)
}

// fill reads one more byte into buf.
func (r *bitReader) fill() error {
	c, err := r.r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w at bit %d", errTruncated, r.pos+int64(r.nb))
		}
		return err
	}
	r.buf |= uint64(c) << r.nb
	r.nb += 8
	r.raw = append(r.raw, c)
	if r.tee != nil {
		r.tee(c)
	}
	return nil
}

// bits reads n <= 24 bits as an unsigned number.
func (r *bitReader) bits(n uint) (uint32, error) {
	for r.nb < n {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	v := uint32(r.buf & (1<<n - 1))
	r.buf >>= n
	r.nb -= n
	r.pos += int64(n)
	return v, nil
}

// byteAligned reads one whole byte; the reader must be at a byte boundary.
func (r *bitReader) alignedByte() (byte, error) {
	v, err := r.bits(8)
	return byte(v), err
}

// bitWriter writes a deflate bit stream. Bits are held in acc and go to out 32 at a time;
// flush (which align calls) puts every whole byte in out.
type bitWriter struct {
	out  []byte
	acc  uint64
	nacc uint
}

// write appends the n low bits of v (n <= 32).
func (w *bitWriter) write(v uint32, n uint) {
	w.acc |= uint64(v) << w.nacc
	w.nacc += n
	if w.nacc >= 32 {
		w.out = binary.LittleEndian.AppendUint32(w.out, uint32(w.acc))
		w.acc >>= 32
		w.nacc -= 32
	}
}

// flush moves the whole bytes held to out, leaving fewer than 8 bits in acc.
func (w *bitWriter) flush() {
	for w.nacc >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

// align pads to a byte boundary with the given padding bits (low bits first) and flushes.
func (w *bitWriter) align(pad byte) {
	if n := (8 - w.nacc%8) % 8; n > 0 {
		w.write(uint32(pad), n)
	}
	w.flush()
}

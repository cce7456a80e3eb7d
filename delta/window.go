package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// window is a read buffer over part of an io.ReaderAt of known size. Sequential forward reads
// cost one ReadAt per buffer; a refill keeps the bytes it still holds.
type window struct {
	r     io.ReaderAt
	size  int64
	name  string // "base" or "target", for errors
	buf   []byte
	start int64 // file offset of buf[0]
	n     int   // valid bytes in buf
}

func newWindow(r io.ReaderAt, size int64, name string, bufSize int) *window {
	bufSize = int(max(min(int64(bufSize), size), 1))
	return &window{r: r, size: size, name: name, buf: make([]byte, bufSize)}
}

// at returns the buffered bytes from off onward, at least min(want, size-off) of them.
// want must not exceed the buffer size. The slice is valid until the next call.
func (w *window) at(off int64, want int) ([]byte, error) {
	if rest := w.size - off; int64(want) > rest {
		want = int(max(rest, 0))
	}
	end := w.start + int64(w.n)
	if off >= w.start && off+int64(want) <= end {
		return w.buf[off-w.start : w.n], nil
	}
	keep := 0
	if off >= w.start && off < end {
		keep = copy(w.buf, w.buf[off-w.start:w.n])
	}
	w.start, w.n = off, keep
	if err := w.fill(); err != nil {
		return nil, err
	}
	return w.buf[:w.n], nil
}

// before returns buffered bytes ending at end (exclusive), at least min(want, end) of them.
func (w *window) before(end int64, want int) ([]byte, error) {
	if int64(want) > end {
		want = int(end)
	}
	if end <= w.start+int64(w.n) && end-int64(want) >= w.start {
		return w.buf[:end-w.start], nil
	}
	w.start = max(0, end-int64(len(w.buf)))
	w.n = 0
	if err := w.fill(); err != nil {
		return nil, err
	}
	if end > w.start+int64(w.n) {
		return nil, fmt.Errorf("delta: %s shorter than its declared size %d", w.name, w.size)
	}
	return w.buf[:end-w.start], nil
}

// fill reads from w.start+w.n up to the buffer's capacity or the declared size.
func (w *window) fill() error {
	limit := min(int64(len(w.buf)), w.size-w.start)
	if int64(w.n) >= limit {
		return nil
	}
	k, err := w.r.ReadAt(w.buf[w.n:limit], w.start+int64(w.n))
	w.n += k
	if int64(w.n) < limit {
		if err == nil || err == io.EOF {
			return fmt.Errorf("delta: %s shorter than its declared size %d (read ended at %d): %w",
				w.name, w.size, w.start+int64(w.n), io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("delta: reading %s at offset %d: %w", w.name, w.start+int64(w.n), err)
	}
	return nil
}

// commonPrefix returns how many leading bytes a and b share.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	a, b = a[:n], b[:n]
	if bytes.Equal(a, b) {
		return n
	}
	i := 0
	for ; i+4096 <= n && bytes.Equal(a[i:i+4096], b[i:i+4096]); i += 4096 {
	}
	for ; i+8 <= n; i += 8 {
		if x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

// commonSuffix returns how many trailing bytes a and b share.
func commonSuffix(a, b []byte) int {
	n := min(len(a), len(b))
	a, b = a[len(a)-n:], b[len(b)-n:]
	j := n
	for ; j-4096 >= 0 && bytes.Equal(a[j-4096:j], b[j-4096:j]); j -= 4096 {
	}
	for ; j-8 >= 0; j -= 8 {
		if x := binary.LittleEndian.Uint64(a[j-8:]) ^ binary.LittleEndian.Uint64(b[j-8:]); x != 0 {
			return n - j + bits.LeadingZeros64(x)/8
		}
	}
	for ; j > 0 && a[j-1] == b[j-1]; j-- {
	}
	return n - j
}

var zeroPage [4096]byte

// leadingZeros returns the index of the first non-zero byte of p, or len(p).
func leadingZeros(p []byte) int {
	i := 0
	for ; i+4096 <= len(p) && bytes.Equal(p[i:i+4096], zeroPage[:]); i += 4096 {
	}
	for ; i+8 <= len(p); i += 8 {
		if x := binary.LittleEndian.Uint64(p[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for ; i < len(p) && p[i] == 0; i++ {
	}
	return i
}

// trailingZeros returns how many bytes at the end of p are zero.
func trailingZeros(p []byte) int {
	j := len(p)
	for ; j-4096 >= 0 && bytes.Equal(p[j-4096:j], zeroPage[:]); j -= 4096 {
	}
	for ; j-8 >= 0; j -= 8 {
		if x := binary.LittleEndian.Uint64(p[j-8:]); x != 0 {
			return len(p) - j + bits.LeadingZeros64(x)/8
		}
	}
	for ; j > 0 && p[j-1] == 0; j-- {
	}
	return len(p) - j
}

// Package x86filter is a reversible transform that makes x86 machine code compress better: the
// 32-bit relative targets of CALL (E8) and JMP (E9) instructions become absolute, so calls to
// one function, scattered over a binary, turn into repeated bytes that a compressor finds. It
// applies to any bytes (a disk image of a root filesystem, of which the executables are a
// part) and Decode(Encode(x)) == x for every input: the transform is a bijection, whatever the
// bytes mean.
//
// The stream is cut into blocks of BlockSize bytes, each transformed on its own (positions
// count from the start of the stream), so a reader can decode any block without the ones
// before it: NewReaderAt gives random access to the decoded bytes.
//
// Which positions change: at a scanned position i holding E8 or E9, whose byte i+4 is 00 or FF
// (a displacement within +-16 MiB: the usual case inside one binary), and more than 4 bytes
// after the last E8/E9 byte left as it was, bytes i+1..i+4 hold a 25-bit displacement; it is
// replaced by (displacement + absolute offset of i+5) mod 2^25, stored the same way (byte i+4
// then says bit 24). Scanning skips the 4 bytes it rewrote. Every test reads only bytes that
// encoding leaves alone or keeps in the same class, and the "4 bytes after an untouched E8/E9"
// rule keeps a rewrite from changing the byte an earlier test looked at, so decoding scans
// the same positions and undoes each rewrite.
package x86filter

import (
	"errors"
	"io"
	"sync"
)

// BlockSize is the unit the transform works in.
const BlockSize = 1 << 20

const mask25 = 1<<25 - 1

// transform encodes or decodes one block in place; off is the block's offset in the stream.
func transform(p []byte, off int64, encode bool) {
	last := -5
	n := len(p)
	for i := 0; i+5 <= n; i++ {
		if p[i]&0xFE != 0xE8 { // neither E8 nor E9
			continue
		}
		if i-last <= 4 || (p[i+4] != 0 && p[i+4] != 0xFF) {
			last = i
			continue
		}
		v := uint32(p[i+1]) | uint32(p[i+2])<<8 | uint32(p[i+3])<<16 | uint32(p[i+4]&1)<<24
		pos := uint32(off + int64(i) + 5)
		if encode {
			v = (v + pos) & mask25
		} else {
			v = (v - pos) & mask25
		}
		p[i+1], p[i+2], p[i+3] = byte(v), byte(v>>8), byte(v>>16)
		p[i+4] = byte(0 - (v >> 24)) // 0x00 or 0xFF
		i += 4
	}
}

// Encode transforms p in place: p starts at stream offset off (a multiple of BlockSize) and
// holds whole blocks, the last one possibly short (the end of the stream).
func Encode(p []byte, off int64) { blocks(p, off, true) }

// Decode undoes Encode, with the same rules for p and off.
func Decode(p []byte, off int64) { blocks(p, off, false) }

func blocks(p []byte, off int64, encode bool) {
	for len(p) > 0 {
		k := min(len(p), BlockSize)
		transform(p[:k], off, encode)
		p, off = p[k:], off+int64(k)
	}
}

// reader transforms a stream block by block.
type reader struct {
	r      io.Reader
	encode bool
	buf    []byte
	off    int64 // stream offset of buf
	pos    int   // next byte of buf to return
	err    error
}

// NewReader returns the decoded stream of an encoded stream r.
func NewReader(r io.Reader) io.Reader { return &reader{r: r} }

// NewEncoder returns the encoded stream of a plain stream r.
func NewEncoder(r io.Reader) io.Reader { return &reader{r: r, encode: true} }

func (t *reader) Read(p []byte) (int, error) {
	for t.pos == len(t.buf) {
		if t.err != nil {
			return 0, t.err
		}
		t.off += int64(len(t.buf))
		if t.buf == nil {
			t.buf = make([]byte, BlockSize)
		}
		n, err := io.ReadFull(t.r, t.buf[:BlockSize])
		t.buf, t.pos = t.buf[:n], 0
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		t.err = err
		transform(t.buf, t.off, t.encode)
		if n == 0 && err == nil {
			t.err = io.ErrNoProgress
		}
	}
	n := copy(p, t.buf[t.pos:])
	t.pos += n
	return n, nil
}

// readerAt decodes an encoded file with random access, keeping the last few decoded blocks
// (callers such as the qcow2 reader read a cluster at a time).
type readerAt struct {
	ra   io.ReaderAt
	size int64

	mu    sync.Mutex
	cache [cacheBlocks]cached
	tick  int
}

const cacheBlocks = 4

type cached struct {
	start int64 // -1: empty
	data  []byte
	used  int
}

// NewReaderAt returns random access to the decoded bytes of an encoded file of size bytes.
func NewReaderAt(ra io.ReaderAt, size int64) io.ReaderAt {
	t := &readerAt{ra: ra, size: size}
	for i := range t.cache {
		t.cache[i].start = -1
	}
	return t
}

func (t *readerAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("x86filter: negative offset")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	done := 0
	for done < len(p) && off < t.size {
		start := off - off%BlockSize
		b, err := t.block(start)
		if err != nil {
			return done, err
		}
		n := copy(p[done:], b[off-start:])
		done += n
		off += int64(n)
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// block returns the decoded block at start, from the cache or read and decoded into the least
// recently used slot.
func (t *readerAt) block(start int64) ([]byte, error) {
	t.tick++
	lru := 0
	for i := range t.cache {
		c := &t.cache[i]
		if c.start == start {
			c.used = t.tick
			return c.data, nil
		}
		if c.used < t.cache[lru].used {
			lru = i
		}
	}
	c := &t.cache[lru]
	c.start = -1
	if c.data == nil {
		c.data = make([]byte, BlockSize)
	}
	b := c.data[:min(BlockSize, t.size-start)]
	if n, err := t.ra.ReadAt(b, start); n < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	transform(b, start, false)
	c.start, c.data, c.used = start, b, t.tick
	return b, nil
}

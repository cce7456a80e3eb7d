package delta

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

const ioChunk = 256 << 10

// baseError is a COPY that the base cannot serve, or that goes backward in a streamed base.
type baseError struct {
	msg      string
	sentinel error
	err      error
}

func (e *baseError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}
func (e *baseError) Unwrap() error        { return e.err }
func (e *baseError) Is(target error) bool { return target == e.sentinel }

// command is one decoded delta command.
type command struct {
	op  byte
	at  int64 // delta offset of the command byte
	pos int64 // COPY: base offset
	n   int64 // LITERAL and COPY: length
}

func (c command) isEnd() bool     { return c.op == opEnd }
func (c command) isLiteral() bool { return c.op >= 1 && c.op <= opLitN8 }

// cmdReader decodes a delta stream, keeping track of the offset for error messages.
type cmdReader struct {
	r   *bufio.Reader
	off int64
	buf []byte
}

func newCmdReader(r io.Reader) *cmdReader {
	return &cmdReader{r: bufio.NewReaderSize(r, 64<<10), buf: make([]byte, ioChunk)}
}

// readFull reads len(p) bytes; a short read is reported as a truncated what.
func (c *cmdReader) readFull(p []byte, at int64, what string) error {
	n, err := io.ReadFull(c.r, p)
	c.off += int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &FormatError{Offset: at, What: what, Err: io.ErrUnexpectedEOF}
	}
	if err != nil {
		return fmt.Errorf("delta: reading delta at offset %d: %w", c.off, err)
	}
	return nil
}

func (c *cmdReader) header() error {
	var m [4]byte
	if err := c.readFull(m[:], 0, "truncated header"); err != nil {
		return err
	}
	if got := binary.BigEndian.Uint32(m[:]); got != Magic {
		return &FormatError{Offset: 0, What: fmt.Sprintf("bad magic %#08x (want %#08x)", got, Magic)}
	}
	return nil
}

func (c *cmdReader) next() (command, error) {
	at := c.off
	op, err := c.r.ReadByte()
	if err == io.EOF {
		return command{}, &FormatError{Offset: at, What: "truncated delta (no END command)", Err: io.ErrUnexpectedEOF}
	}
	if err != nil {
		return command{}, fmt.Errorf("delta: reading delta at offset %d: %w", at, err)
	}
	c.off++
	cmd := command{op: op, at: at}
	switch {
	case op == opEnd:
		return cmd, nil
	case op <= opLitMax:
		cmd.n = int64(op)
		return cmd, nil
	case op > opCopyLast:
		return cmd, &FormatError{Offset: at, What: fmt.Sprintf("unknown command byte %#02x", op)}
	}
	w1, w2 := cmdWidths(op)
	var p [16]byte
	if err := c.readFull(p[:w1+w2], at, fmt.Sprintf("truncated parameters of command %#02x", op)); err != nil {
		return cmd, err
	}
	v1, v2 := readUint(p[:w1]), readUint(p[w1:w1+w2])
	if op <= opLitN8 {
		if v1 == 0 || v1 > math.MaxInt64 {
			return cmd, &FormatError{Offset: at, What: fmt.Sprintf("invalid literal length %d", v1)}
		}
		cmd.n = int64(v1)
		return cmd, nil
	}
	if v2 == 0 || v2 > math.MaxInt64 || v1 > math.MaxInt64-v2 {
		return cmd, &FormatError{Offset: at, What: fmt.Sprintf("invalid copy (offset %d length %d)", v1, v2)}
	}
	cmd.pos, cmd.n = int64(v1), int64(v2)
	return cmd, nil
}

func readUint(p []byte) uint64 {
	var v uint64
	for _, b := range p {
		v = v<<8 | uint64(b)
	}
	return v
}

// literal copies the data of a LITERAL command to out (or skips it when out is nil).
func (c *cmdReader) literal(cmd command, out io.Writer) error {
	for left := cmd.n; left > 0; {
		k := int64(len(c.buf))
		if left < k {
			k = left
		}
		n, err := io.ReadFull(c.r, c.buf[:k])
		c.off += int64(n)
		if out != nil && n > 0 {
			if _, werr := out.Write(c.buf[:n]); werr != nil {
				return fmt.Errorf("delta: writing output: %w", werr)
			}
		}
		left -= int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return &FormatError{Offset: cmd.at,
				What: fmt.Sprintf("truncated literal (%d of %d bytes present)", cmd.n-left, cmd.n),
				Err:  io.ErrUnexpectedEOF}
		}
		if err != nil {
			return fmt.Errorf("delta: reading delta at offset %d: %w", c.off, err)
		}
	}
	return nil
}

// Patch applies delta to base and writes the result to out, reading base once as a forward-only
// stream: the gap before each COPY is skipped with Seek when base is an io.Seeker that can seek
// (relative to where base stands when Patch is called), and read and discarded otherwise. A
// COPY that starts before the end of the previous one returns an error wrapping ErrBackwardCopy
// (use PatchAt for such deltas); one that needs bytes past the end of base returns an error
// wrapping ErrShortBase.
func Patch(base io.Reader, delta io.Reader, out io.Writer) error {
	seeker, canSeek := base.(io.Seeker)
	var br *bufio.Reader
	src := base
	if !canSeek {
		br = bufio.NewReaderSize(base, ioChunk)
		src = br
	}
	var cur int64 // base offset of the next byte base will return
	return apply(delta, out, func(cmd command, bw *bufio.Writer, buf []byte) error {
		if cmd.pos < cur {
			return &baseError{sentinel: ErrBackwardCopy, msg: fmt.Sprintf(
				"delta: backward copy at delta offset %d (offset %d length %d, base already read to %d)",
				cmd.at, cmd.pos, cmd.n, cur)}
		}
		sought := false
		if skip := cmd.pos - cur; skip > 0 {
			if canSeek {
				if _, err := seeker.Seek(skip, io.SeekCurrent); err == nil {
					sought = true
				} else {
					// A pipe is an *os.File too, but cannot seek: read and discard from now on.
					canSeek = false
					br = bufio.NewReaderSize(base, ioChunk)
					src = br
				}
			}
			if !sought {
				n, err := br.Discard(int(min(skip, math.MaxInt)))
				cur += int64(n)
				if err != nil || int64(n) < skip {
					return shortBase(cmd, cur, err)
				}
			}
			cur = cmd.pos
		}
		for left := cmd.n; left > 0; {
			k := min(left, int64(len(buf)))
			n, err := io.ReadFull(src, buf[:k])
			if n > 0 {
				if _, werr := bw.Write(buf[:n]); werr != nil {
					return fmt.Errorf("delta: writing output: %w", werr)
				}
			}
			cur += int64(n)
			left -= int64(n)
			if err != nil {
				if sought && n == 0 && cur == cmd.pos {
					// Seek past the end does not fail; all we know is that base ends before pos.
					return &baseError{sentinel: ErrShortBase, msg: fmt.Sprintf(
						"delta: copy past end of base (offset %d length %d, base ends before offset %d) at delta offset %d",
						cmd.pos, cmd.n, cmd.pos, cmd.at)}
				}
				return shortBase(cmd, cur, err)
			}
		}
		return nil
	})
}

func shortBase(cmd command, size int64, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF || err == nil {
		err = io.ErrUnexpectedEOF
	} else {
		return fmt.Errorf("delta: reading base at offset %d: %w", size, err)
	}
	return &baseError{sentinel: ErrShortBase, err: err, msg: fmt.Sprintf(
		"delta: copy past end of base (offset %d length %d, base size %d) at delta offset %d",
		cmd.pos, cmd.n, size, cmd.at)}
}

// PatchAt applies any librsync delta, whatever the order of its copies, reading base with random
// access. baseSize is the size of base; a COPY beyond it returns an error wrapping ErrShortBase.
func PatchAt(base io.ReaderAt, baseSize int64, delta io.Reader, out io.Writer) error {
	return apply(delta, out, func(cmd command, bw *bufio.Writer, buf []byte) error {
		if cmd.pos+cmd.n > baseSize {
			return &baseError{sentinel: ErrShortBase, msg: fmt.Sprintf(
				"delta: copy past end of base (offset %d length %d, base size %d) at delta offset %d",
				cmd.pos, cmd.n, baseSize, cmd.at)}
		}
		for off, end := cmd.pos, cmd.pos+cmd.n; off < end; {
			k := min(end-off, int64(len(buf)))
			n, err := base.ReadAt(buf[:k], off)
			if n > 0 {
				if _, werr := bw.Write(buf[:n]); werr != nil {
					return fmt.Errorf("delta: writing output: %w", werr)
				}
			}
			off += int64(n)
			if int64(n) < k {
				if err == nil || errors.Is(err, io.EOF) {
					return shortBase(cmd, off, io.ErrUnexpectedEOF)
				}
				return fmt.Errorf("delta: reading base at offset %d: %w", off, err)
			}
		}
		return nil
	})
}

// apply runs a delta: it checks the header, writes literals to out itself, hands each COPY to
// copyFn with the output and a scratch buffer, and flushes the output at END. Patch and PatchAt
// differ only in how they serve a COPY.
func apply(delta io.Reader, out io.Writer, copyFn func(cmd command, bw *bufio.Writer, buf []byte) error) error {
	bw := bufio.NewWriterSize(out, ioChunk)
	cr := newCmdReader(delta)
	if err := cr.header(); err != nil {
		return err
	}
	for {
		cmd, err := cr.next()
		if err != nil {
			return err
		}
		switch {
		case cmd.isEnd():
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("delta: writing output: %w", err)
			}
			return nil
		case cmd.isLiteral():
			if err := cr.literal(cmd, bw); err != nil {
				return err
			}
		default:
			if err := copyFn(cmd, bw, cr.buf); err != nil {
				return err
			}
		}
	}
}

// OutputSize reads a whole delta and returns the size of the file it produces, checking the
// delta's structure (not that any base would be long enough).
func OutputSize(delta io.Reader) (int64, error) {
	cr := newCmdReader(delta)
	if err := cr.header(); err != nil {
		return 0, err
	}
	var size int64
	for {
		cmd, err := cr.next()
		if err != nil {
			return 0, err
		}
		if cmd.isEnd() {
			return size, nil
		}
		if cmd.n > math.MaxInt64-size {
			return 0, &FormatError{Offset: cmd.at, What: "output size overflows int64"}
		}
		size += cmd.n
		if cmd.isLiteral() {
			if err := cr.literal(cmd, nil); err != nil {
				return 0, err
			}
		}
	}
}

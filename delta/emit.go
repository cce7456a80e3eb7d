package delta

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// countWriter counts what reaches the underlying writer.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil {
		err = fmt.Errorf("delta: writing delta: %w", err)
	}
	return n, err
}

// emitter writes delta commands, merging adjacent copies and adjacent literals so that each run
// costs one command, in the shortest encoding.
type emitter struct {
	cw     countWriter
	w      *bufio.Writer
	target *window // literal bytes are read from here
	st     *Stats
	hdr    []byte

	copyOff, copyLen int64 // pending COPY
	litOff, litLen   int64 // pending LITERAL (target range)
}

func newEmitter(w io.Writer, target *window, st *Stats) (*emitter, error) {
	e := &emitter{target: target, st: st, hdr: make([]byte, 0, 32)}
	e.cw.w = w
	e.w = bufio.NewWriterSize(&e.cw, 64<<10)
	if err := binary.Write(e.w, binary.BigEndian, Magic); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *emitter) copy(off, n int64) error {
	if n <= 0 {
		return nil
	}
	if err := e.flushLiteral(); err != nil {
		return err
	}
	if e.copyLen > 0 && e.copyOff+e.copyLen == off {
		e.copyLen += n
		return nil
	}
	if err := e.flushCopy(); err != nil {
		return err
	}
	e.copyOff, e.copyLen = off, n
	return nil
}

func (e *emitter) literal(lo, hi int64) error {
	if hi <= lo {
		return nil
	}
	if err := e.flushCopy(); err != nil {
		return err
	}
	if e.litLen > 0 && e.litOff+e.litLen == lo {
		e.litLen += hi - lo
		return nil
	}
	if err := e.flushLiteral(); err != nil {
		return err
	}
	e.litOff, e.litLen = lo, hi-lo
	return nil
}

func (e *emitter) flushCopy() error {
	for e.copyLen > 0 {
		k := min(e.copyLen, maxCopyLen)
		e.hdr = appendCopyCmd(e.hdr[:0], e.copyOff, k)
		if _, err := e.w.Write(e.hdr); err != nil {
			return err
		}
		e.st.Copies++
		e.st.CopyBytes += k
		e.copyOff += k
		e.copyLen -= k
	}
	return nil
}

func (e *emitter) flushLiteral() error {
	for e.litLen > 0 {
		k := min(e.litLen, maxCopyLen)
		e.hdr = appendLiteralCmd(e.hdr[:0], k)
		if _, err := e.w.Write(e.hdr); err != nil {
			return err
		}
		for pos, end := e.litOff, e.litOff+k; pos < end; {
			p, err := e.target.at(pos, 1)
			if err != nil {
				return err
			}
			p = p[:min(int64(len(p)), end-pos)]
			if len(p) == 0 {
				return fmt.Errorf("delta: target ended at %d inside a literal", pos)
			}
			if _, err := e.w.Write(p); err != nil {
				return err
			}
			pos += int64(len(p))
		}
		e.st.Literals++
		e.st.LiteralBytes += k
		e.litOff += k
		e.litLen -= k
	}
	return nil
}

func (e *emitter) end() error {
	if err := e.flushCopy(); err != nil {
		return err
	}
	if err := e.flushLiteral(); err != nil {
		return err
	}
	if err := e.w.WriteByte(opEnd); err != nil {
		return err
	}
	if err := e.w.Flush(); err != nil {
		return err
	}
	e.st.DeltaSize = e.cw.n
	return nil
}

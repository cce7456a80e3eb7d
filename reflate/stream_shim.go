package reflate

// temporary: replaced by the streaming implementation at merge. These two give the streaming
// API's signatures over Split and Rebuild, which hold the whole stream and its plain data in
// memory.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"fmt"
	"io"
)

// recorder is an io.ByteReader that keeps every byte it hands out.
type recorder struct {
	r   io.ByteReader
	buf bytes.Buffer
}

func (c *recorder) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.buf.WriteByte(b)
	}
	return b, err
}

func (c *recorder) Read(p []byte) (int, error) {
	for i := range p {
		b, err := c.ReadByte()
		if err != nil {
			return i, err
		}
		p[i] = b
	}
	return len(p), nil
}

// SplitStream reads one raw deflate stream from r, writes its plain data to plain and returns
// the reconstruction data and the number of compressed bytes it consumed. When r is an
// io.ByteReader it reads no byte past the stream's end.
func SplitStream(r io.Reader, plain io.Writer) (recon []byte, n int64, err error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = bufio.NewReader(r)
	}
	rec := &recorder{r: br}
	zr := flate.NewReader(rec)
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, 0, fmt.Errorf("reflate: %w", err)
	}
	p, recon, k, err := Split(rec.buf.Bytes())
	if err != nil {
		return nil, 0, err
	}
	if _, err := plain.Write(p); err != nil {
		return nil, 0, err
	}
	return recon, int64(k), nil
}

// RebuildStream writes the deflate stream that recon and the plain data read from plain make.
func RebuildStream(w io.Writer, plain io.Reader, recon []byte) error {
	p, err := io.ReadAll(plain)
	if err != nil {
		return err
	}
	out, err := Rebuild(p, recon)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

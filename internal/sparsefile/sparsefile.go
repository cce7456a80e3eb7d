// Package sparsefile is the project's one sparse writer: disk images are mostly zeros, and a
// file written with holes for them costs neither the writes nor the space.
package sparsefile

import (
	"bytes"
	"io"
	"os"
)

// BlockSize is the unit of hole detection: an aligned block of zeros is skipped, not written.
const BlockSize = 64 << 10

var zeros [BlockSize]byte

// Writer writes sequentially from offset 0 of a file that is empty (or all zeros) where it
// writes, skipping aligned all-zero blocks. Call Finish to give the file its length: a trailing
// hole is not written at all.
type Writer struct {
	f   *os.File
	off int64
}

// NewWriter returns a Writer at offset 0 of f.
func NewWriter(f *os.File) *Writer { return &Writer{f: f} }

func (w *Writer) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		// Up to the next block boundary of the file, so holes are whole blocks of it.
		end := min(len(p), n+int(BlockSize-(w.off+int64(n))%BlockSize))
		b := p[n:end]
		if !bytes.Equal(b, zeros[:len(b)]) {
			if _, err := w.f.WriteAt(b, w.off+int64(n)); err != nil {
				w.off += int64(n)
				return n, err
			}
		}
		n = end
	}
	w.off += int64(n)
	return n, nil
}

// Size is the number of bytes written so far, holes included.
func (w *Writer) Size() int64 { return w.off }

// Finish sets the file's length to Size.
func (w *Writer) Finish() error { return w.f.Truncate(w.off) }

// Copy copies r to the start of f with holes for zero blocks and sets f's length: a spool.
func Copy(f *os.File, r io.Reader) (int64, error) {
	w := NewWriter(f)
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(w, struct{ io.Reader }{r}, buf) // not f.ReadFrom: that writes zeros
	if err != nil {
		return n, err
	}
	return n, w.Finish()
}

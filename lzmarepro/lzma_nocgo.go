//go:build !cgo

package lzmarepro

const haveLZMA = false

// Version is the liblzma this build re-encodes with, or "" without cgo.
func Version() string { return "" }

// Encoder re-encodes MicroLZMA; without cgo every call fails with ErrNoCgo.
type Encoder struct{}

// NewEncoder fails without cgo: LZMA is re-encoded with liblzma.
func NewEncoder() (*Encoder, error) { return nil, ErrNoCgo }

// Close does nothing.
func (e *Encoder) Close() {}

// MicroLZMA fails without cgo.
func (e *Encoder) MicroLZMA(in []byte, limit int, p Params) ([]byte, int, error) {
	return nil, 0, ErrNoCgo
}

// DecodeMicroLZMA fails without cgo.
func (e *Encoder) DecodeMicroLZMA(out, stream []byte, dictSize uint32) error { return ErrNoCgo }

type xzCoder struct{}

func newXZEncoder(o XZOptions) (*xzCoder, error) { return nil, ErrNoCgo }
func newXZDecoder() (*xzCoder, error)            { return nil, ErrNoCgo }
func (c *xzCoder) close()                        {}
func (c *xzCoder) code(in, out []byte, finish bool) (int, int, bool, error) {
	return 0, 0, false, ErrNoCgo
}

//go:build !cgo

package precomp

import (
	"errors"
	"fmt"
)

const haveCompressor = false

type compressor struct{}

func newCompressor() (*compressor, error) {
	return nil, fmt.Errorf("precomp: this rehydrator was built without cgo, and zstd frames are reproduced with libzstd: %w", errors.ErrUnsupported)
}

func (c *compressor) close() {}

func (c *compressor) compress(src []byte, level int) ([]byte, error) {
	return nil, fmt.Errorf("precomp: built without cgo: %w", errors.ErrUnsupported)
}

// Version is the libzstd this build reproduces frames with, or "" without cgo.
func Version() string { return "" }

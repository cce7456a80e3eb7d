package vhd

import (
	"bytes"
	"io"
)

// Cookie starts every VHD footer.
const Cookie = "conectix"

// Sniff reports whether the size-byte file in r ends with a footer's cookie: whether it claims
// to be a VHD (OpenFixed then says whether it is a good fixed one).
func Sniff(r io.ReaderAt, size int64) bool {
	var b [len(Cookie)]byte
	if size < FooterSize {
		return false
	}
	n, _ := r.ReadAt(b[:], size-FooterSize)
	return n == len(b) && bytes.Equal(b[:], []byte(Cookie))
}

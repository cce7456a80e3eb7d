package sparsetar

import (
	"bytes"
	"io"
)

// Magic is the old GNU tar magic (tar --format=oldgnu, and GNU's default format), at offset
// 257 of a header block.
const Magic = "ustar  \x00"

// Sniff reports whether the size-byte file in r starts with an old GNU tar header: whether it
// claims to be the archive this package reads (Open then says whether it is a good one).
func Sniff(r io.ReaderAt, size int64) bool {
	var b [len(Magic)]byte
	if size < block {
		return false
	}
	n, _ := r.ReadAt(b[:], offMagic)
	return n == len(b) && bytes.Equal(b[:], []byte(Magic))
}

package qcow2

import (
	"encoding/binary"
	"io"
)

// Sniff reports whether the size-byte file in r starts with the qcow2 magic: whether it claims
// to be a qcow2 image (Open then says whether it is a good one).
func Sniff(r io.ReaderAt, size int64) bool {
	var b [4]byte
	if size < int64(len(b)) {
		return false
	}
	n, _ := r.ReadAt(b[:], 0)
	return n == len(b) && binary.BigEndian.Uint32(b[:]) == Magic
}

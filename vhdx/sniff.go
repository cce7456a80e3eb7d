package vhdx

import "io"

// Magic starts every VHDX file.
const Magic = "vhdxfile"

// Sniff reports whether the size-byte file in r starts with the VHDX file identifier: whether it
// claims to be a VHDX (Open then says whether it is a good one).
func Sniff(r io.ReaderAt, size int64) bool {
	var b [len(Magic)]byte
	if size < int64(len(b)) {
		return false
	}
	n, _ := r.ReadAt(b[:], 0)
	return n == len(b) && string(b[:]) == Magic
}

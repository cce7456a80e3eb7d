// Package delta owns the rsync-style deltas that turn the baseline disk image into every other
// artifact. Its wire format is librsync's delta format (magic "rs\x026", LITERAL and COPY
// commands, END), so `rdiff patch` applies what Compute writes and PatchAt applies what `rdiff
// delta` writes. The engine is our own: it follows the diagonal along which target and base agree
// at memcmp speed, keeps literals down to the bytes that really differ, and only falls back to a
// rolling-hash search of a compact base index when an insertion or deletion loses the diagonal.
package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic is the first four bytes (big-endian) of every librsync delta: "rs\x026".
const Magic uint32 = 0x72730236

// Command bytes of librsync's delta format (librsync prototab.h).
const (
	opEnd       = 0x00
	opLitMax    = 0x40 // 0x01..0x40: literal whose length is the command byte itself
	opLitN1     = 0x41 // 0x41..0x44: literal with a 1, 2, 4 or 8-byte length
	opLitN8     = 0x44
	opCopyFirst = 0x45 // 0x45..0x54: copy; offset width 1,2,4,8 major, length width minor
	opCopyLast  = 0x54
)

// maxCopyLen caps one COPY or LITERAL command. Some librsync versions keep a copy's remaining
// length in an int (patch.c: basis_len = (int)len), which a copy of 2 GiB or more would overflow;
// splitting longer runs costs a few bytes per GiB. (rdiff 2.3.2 here did apply a 3 GiB copy.)
const maxCopyLen = 1 << 30

var (
	// ErrCorrupt is wrapped by every error about a malformed delta: bad magic, unknown command
	// byte, zero or negative lengths, truncation, a missing END command.
	ErrCorrupt = errors.New("delta: corrupt delta")
	// ErrBackwardCopy is returned (wrapped) by Patch when a COPY reads the base before the end of
	// the previous copy, which a forward-only stream cannot do; PatchAt accepts such deltas.
	ErrBackwardCopy = errors.New("delta: backward copy")
	// ErrShortBase is wrapped when a COPY needs base bytes that the base does not have.
	ErrShortBase = errors.New("delta: base too short")
)

// FormatError describes a malformed delta and where it went wrong. errors.Is(err, ErrCorrupt)
// holds for every FormatError; Err, when set, is the underlying cause (io.ErrUnexpectedEOF for
// a truncated delta).
type FormatError struct {
	Offset int64 // offset in the delta stream of the command or field at fault
	What   string
	Err    error
}

func (e *FormatError) Error() string {
	s := fmt.Sprintf("delta: %s at delta offset %d", e.What, e.Offset)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorrupt) true for every format error.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

// intWidth is the smallest librsync integer width (1, 2, 4 or 8 bytes) that holds v.
func intWidth(v uint64) int {
	switch {
	case v <= 0xff:
		return 1
	case v <= 0xffff:
		return 2
	case v <= 0xffffffff:
		return 4
	}
	return 8
}

// widthCode maps a width of 1, 2, 4 or 8 bytes to 0..3, the order of librsync's command table.
func widthCode(w int) int {
	switch w {
	case 1:
		return 0
	case 2:
		return 1
	case 4:
		return 2
	}
	return 3
}

// putUint writes v big-endian in w bytes.
func putUint(b []byte, v uint64, w int) []byte {
	switch w {
	case 1:
		return append(b, byte(v))
	case 2:
		return binary.BigEndian.AppendUint16(b, uint16(v))
	case 4:
		return binary.BigEndian.AppendUint32(b, uint32(v))
	}
	return binary.BigEndian.AppendUint64(b, v)
}

// appendLiteralCmd appends the shortest LITERAL command header for n > 0 bytes.
func appendLiteralCmd(b []byte, n int64) []byte {
	if n <= opLitMax {
		return append(b, byte(n))
	}
	w := intWidth(uint64(n))
	b = append(b, byte(opLitN1+widthCode(w)))
	return putUint(b, uint64(n), w)
}

// appendCopyCmd appends the shortest COPY command for offset off and length n > 0.
func appendCopyCmd(b []byte, off, n int64) []byte {
	wo, wn := intWidth(uint64(off)), intWidth(uint64(n))
	b = append(b, byte(opCopyFirst+4*widthCode(wo)+widthCode(wn)))
	b = putUint(b, uint64(off), wo)
	return putUint(b, uint64(n), wn)
}

// cmdWidths returns the parameter widths of a LITERAL_N* or COPY_* command byte.
func cmdWidths(op byte) (w1, w2 int) {
	widths := [4]int{1, 2, 4, 8}
	switch {
	case op >= opLitN1 && op <= opLitN8:
		return widths[op-opLitN1], 0
	case op >= opCopyFirst && op <= opCopyLast:
		c := op - opCopyFirst
		return widths[c/4], widths[c%4]
	}
	return 0, 0
}

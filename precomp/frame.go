package precomp

import (
	"encoding/binary"
)

// zstdMagic starts every zstd frame (RFC 8878 section 3.1.1), little-endian 0xFD2FB528.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// frameInfo describes a well-formed zstd frame found at the start of a buffer.
type frameInfo struct {
	length      int   // whole frame, magic to checksum
	contentSize int64 // from the frame header, -1 when absent
	dictID      uint32
}

// parseFrame walks the frame header and block headers of the zstd frame at the start of b
// without decoding it, and reports its length. ok is false when b does not start with a
// complete, well-formed frame (a chance magic number in other data, or a frame cut off by the
// end of b).
func parseFrame(b []byte) (fi frameInfo, ok bool) {
	if len(b) < 6 || b[0] != zstdMagic[0] || b[1] != zstdMagic[1] || b[2] != zstdMagic[2] || b[3] != zstdMagic[3] {
		return fi, false
	}
	fhd := b[4]
	if fhd&0x08 != 0 { // reserved bit
		return fi, false
	}
	fcsFlag := fhd >> 6
	single := fhd&0x20 != 0
	checksum := fhd&0x04 != 0
	dictLen := [4]int{0, 1, 2, 4}[fhd&3]
	fcsLen := [4]int{0, 2, 4, 8}[fcsFlag]
	if fcsFlag == 0 && single {
		fcsLen = 1
	}
	p := 5
	if !single {
		p++ // window descriptor
	}
	if p+dictLen+fcsLen > len(b) {
		return fi, false
	}
	switch dictLen {
	case 1:
		fi.dictID = uint32(b[p])
	case 2:
		fi.dictID = uint32(binary.LittleEndian.Uint16(b[p:]))
	case 4:
		fi.dictID = binary.LittleEndian.Uint32(b[p:])
	}
	p += dictLen
	fi.contentSize = -1
	switch fcsLen {
	case 1:
		fi.contentSize = int64(b[p])
	case 2:
		fi.contentSize = int64(binary.LittleEndian.Uint16(b[p:])) + 256
	case 4:
		fi.contentSize = int64(binary.LittleEndian.Uint32(b[p:]))
	case 8:
		fi.contentSize = int64(binary.LittleEndian.Uint64(b[p:]) & (1<<63 - 1))
	}
	p += fcsLen
	for {
		if p+3 > len(b) {
			return fi, false
		}
		h := uint32(b[p]) | uint32(b[p+1])<<8 | uint32(b[p+2])<<16
		p += 3
		last, typ, size := h&1 != 0, (h>>1)&3, int(h>>3)
		switch typ {
		case 0, 2: // raw, compressed
			if typ == 2 && size > 128<<10 {
				return fi, false
			}
			p += size
		case 1: // RLE: one byte repeated size times
			p++
		default:
			return fi, false
		}
		if p > len(b) {
			return fi, false
		}
		if last {
			break
		}
	}
	if checksum {
		p += 4
		if p > len(b) {
			return fi, false
		}
	}
	fi.length = p
	return fi, true
}

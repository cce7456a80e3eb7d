package filemap

import (
	"fmt"
	"sort"
)

// Frame is one compressed block of an original stream that its expanded form holds
// decompressed (precomp's Frame).
type Frame struct {
	Offset   int64 // in the original
	Length   int64 // compressed bytes in the original
	Expanded int64 // bytes it decompresses to
}

// Expansion maps offsets of an original stream to its expanded stream: a header, then the
// original with each frame replaced by its content (precomp's layout).
type Expansion struct {
	header int64
	frames []Frame
	cum    []int64 // cum[i]: how much frames[:i] grew
}

// NewExpansion returns the expansion with header bytes before the body and the frames (sorted
// by Offset, disjoint). For precomp, header is Plan.ExpandedSize(size) - size minus the
// frames' growth (Expanded - Length summed).
func NewExpansion(header int64, frames []Frame) (*Expansion, error) {
	e := &Expansion{header: header, frames: frames, cum: make([]int64, len(frames)+1)}
	var end int64
	for i, f := range frames {
		if f.Offset < end || f.Length <= 0 || f.Expanded < 0 {
			return nil, fmt.Errorf("filemap: expansion frame %d at %d out of order or empty", i, f.Offset)
		}
		end = f.Offset + f.Length
		e.cum[i+1] = e.cum[i] + f.Expanded - f.Length
	}
	return e, nil
}

// Piece is where a byte range of a file lies in an original image (a filesystem image inside
// an ISO, say). When InFrame, Offset is the original offset of the compressed block holding it
// and Within the offset in the block's decompressed content; otherwise the bytes are stored
// as they are at Offset+Within.
type Piece struct {
	FileOffset, Length int64
	Offset, Within     int64
	InFrame            bool
}

// Locate turns pieces of a file in an image at base bytes into the original stream into
// extents of the expanded stream. Pieces in frames the expansion does not hold (blocks that did
// not reproduce), or that pass a frame's end, are left out: the delta sees them compressed.
func (e *Expansion) Locate(pieces []Piece, base int64) []Extent {
	var out []Extent
	for _, p := range pieces {
		if p.Length <= 0 {
			continue
		}
		var off int64
		var ok bool
		if p.InFrame {
			off, ok = e.inFrame(base+p.Offset, p.Within, p.Length)
		} else {
			off, ok = e.plain(base+p.Offset+p.Within, p.Length)
		}
		if ok {
			out = append(out, Extent{FileOffset: p.FileOffset, Offset: off, Length: p.Length})
		}
	}
	return out
}

// frameAt is the index of the first frame that ends after off.
func (e *Expansion) frameAt(off int64) int {
	return sort.Search(len(e.frames), func(i int) bool { return e.frames[i].Offset+e.frames[i].Length > off })
}

func (e *Expansion) plain(off, n int64) (int64, bool) {
	i := e.frameAt(off)
	if i < len(e.frames) && e.frames[i].Offset < off+n {
		return 0, false // inside or across a frame
	}
	return e.header + off + e.cum[i], true
}

func (e *Expansion) inFrame(frame, within, n int64) (int64, bool) {
	i := e.frameAt(frame)
	if i >= len(e.frames) || e.frames[i].Offset != frame || within < 0 || within+n > e.frames[i].Expanded {
		return 0, false
	}
	return e.header + frame + e.cum[i] + within, true
}

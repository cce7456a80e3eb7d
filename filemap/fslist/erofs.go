package fslist

import (
	"fmt"
	"io"
	"sort"

	"github.com/rehydrator/rehydrator/erofs"
	"github.com/rehydrator/rehydrator/erofsprecomp"
	"github.com/rehydrator/rehydrator/filemap"
)

// EROFS lists the regular files of the EROFS image at off in r (size bytes), with extents as
// offsets of an expanded stream in which erofsprecomp's expansion of the image under plan
// starts at at (plan nil: the image as it is starts at at). A file's data is found wherever the expanded image shows it plain: stored
// blocks, inline tails, the plain data of the clusters plan expands (a file's own, or the
// packed inode's for its fragment); what lies in clusters left compressed has no extent.
// Clusters several files share (dedupe) give each of them an extent on the same bytes.
func EROFS(r io.ReaderAt, off, size int64, plan *erofsprecomp.Plan, at int64) ([]filemap.File, error) {
	im, err := erofs.Open(io.NewSectionReader(r, off, size))
	if err != nil {
		return nil, err
	}
	l, err := newErofsLister(im, plan, size, at)
	if err != nil {
		return nil, err
	}
	var out []filemap.File
	err = im.Walk(func(p string, in *erofs.Inode) error {
		if !in.IsRegular() {
			return nil
		}
		f := filemap.File{Path: p, Size: int64(in.Size)}
		if f.Size > 0 {
			ext, err := im.Extents(in)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			f.Extents = l.locate(ext)
		}
		out = append(out, f)
		return nil
	})
	return out, err
}

// erofsLister turns an image's extents into pieces of the image and those into extents of the
// expanded stream.
type erofsLister struct {
	bs     int64
	exp    *filemap.Expansion
	plain  map[int64]int64 // expanded cluster's offset -> its plain bytes in the body
	packed []erofs.Extent  // the packed inode's extents (fragments), in file order
	pieces []filemap.Piece
}

func newErofsLister(im *erofs.Image, plan *erofsprecomp.Plan, size, at int64) (*erofsLister, error) {
	l := &erofsLister{bs: im.Superblock().BlockSize(), plain: map[int64]int64{}}
	var clusters []erofsprecomp.Cluster
	var growth, header int64
	if plan != nil {
		clusters = plan.Clusters
		header = plan.ExpandedSize(size) - size
	}
	frames := make([]filemap.Frame, len(clusters))
	for i, c := range clusters {
		x := c.Plain
		if c.Explicit {
			x += c.Lookahead
		}
		frames[i] = filemap.Frame{Offset: c.Offset, Length: c.Length, Expanded: x}
		growth += x - c.Length
		l.plain[c.Offset] = c.Plain
	}
	if header -= growth; header < 0 {
		return nil, fmt.Errorf("fslist: EROFS plan with a header of %d bytes", header)
	}
	exp, err := filemap.NewExpansion(at+header, frames)
	if err != nil {
		return nil, err
	}
	l.exp = exp
	p, err := im.Packed()
	if err != nil {
		return nil, err
	}
	if p != nil {
		if l.packed, err = im.Extents(p); err != nil {
			return nil, fmt.Errorf("packed inode: %w", err)
		}
		for _, e := range l.packed {
			if e.Kind == erofs.Fragment {
				return nil, fmt.Errorf("fslist: EROFS packed inode %d has a fragment of its own", p.Nid)
			}
		}
	}
	return l, nil
}

// locate gives a file's extents in the expanded stream.
func (l *erofsLister) locate(ext []erofs.Extent) []filemap.Extent {
	l.pieces = l.pieces[:0]
	for _, e := range ext {
		if e.Kind != erofs.Fragment {
			l.piece(e, 0, e.Length, e.FileOffset)
			continue
		}
		// The bytes are the packed inode's [PackedOffset, +Length): through its extents.
		lo, hi := e.PackedOffset, e.PackedOffset+e.Length
		i := sort.Search(len(l.packed), func(i int) bool { return l.packed[i].FileOffset+l.packed[i].Length > lo })
		for ; i < len(l.packed) && l.packed[i].FileOffset < hi; i++ {
			pe := l.packed[i]
			s := max(lo, pe.FileOffset)
			t := min(hi, pe.FileOffset+pe.Length)
			if s < t {
				l.piece(pe, s-pe.FileOffset, t-s, e.FileOffset+s-lo)
			}
		}
	}
	return l.exp.Locate(l.pieces, 0)
}

// piece adds where bytes [rel, rel+n) of extent e (file offset fo on) lie in the image, if
// the expanded stream shows them plain.
func (l *erofsLister) piece(e erofs.Extent, rel, n, fo int64) {
	if n <= 0 || rel < 0 || rel+n > e.Length || e.Device != 0 {
		return
	}
	switch {
	case e.Kind == erofs.Plain && !e.Interlaced:
		l.pieces = append(l.pieces, filemap.Piece{FileOffset: fo, Length: n, Offset: e.PhysOffset + rel})
	case e.Kind == erofs.Plain:
		// Interlaced: the extent's byte k is at in-block offset skip+k up to the block's end,
		// then from the block's start (erofs's decodeExtent).
		skip := e.FileOffset % l.bs
		right := min(l.bs-skip, e.Length, e.PhysLength-skip)
		if right < 0 || e.Length-right > e.PhysLength {
			return
		}
		if a := min(rel+n, right); rel < a {
			l.pieces = append(l.pieces, filemap.Piece{FileOffset: fo, Length: a - rel, Offset: e.PhysOffset + skip + rel})
		}
		if b := max(rel, right); b < rel+n {
			l.pieces = append(l.pieces, filemap.Piece{FileOffset: fo + b - rel, Length: rel + n - b, Offset: e.PhysOffset + b - right})
		}
	case e.Kind == erofs.Compressed:
		// An expanded cluster's plain data is its decoded output from the start, the extent's
		// first; a shared (dedupe'd) cluster serves every file's extent from its start too.
		plain, ok := l.plain[e.PhysOffset]
		if !ok || rel >= plain {
			return
		}
		l.pieces = append(l.pieces, filemap.Piece{FileOffset: fo, Length: min(n, plain-rel), Offset: e.PhysOffset, Within: rel, InFrame: true})
	}
}

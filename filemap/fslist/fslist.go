// Package fslist turns the listings of the filesystem readers (ext4, xfs, squashfs, erofs)
// into filemap's file lists, and precomp's and erofsprecomp's plans into a filemap.Expansion:
// the glue between the format packages and the format-neutral filemap.
package fslist

import (
	"errors"
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/ext4"
	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/precomp"
	"github.com/rehydrator/rehydrator/squashfs"
	"github.com/rehydrator/rehydrator/xfs"
)

// ErrUnknown means a filesystem is neither XFS nor ext2/3/4.
var ErrUnknown = errors.New("fslist: not an XFS or ext4 filesystem")

// extent is the shape of ext4.Extent and xfs.Extent.
type extent struct {
	FileOffset, Offset, Length int64
	Unwritten                  bool
}

// file makes a filemap file of a lister's entry, its extents moved by off and the unwritten
// ones left out (they read as zeros).
func file[E ext4.Extent | xfs.Extent](path string, size, off int64, ext []E) filemap.File {
	f := filemap.File{Path: path, Size: size}
	for _, e := range ext {
		x := extent(e)
		if !x.Unwritten {
			f.Extents = append(f.Extents, filemap.Extent{FileOffset: x.FileOffset, Offset: off + x.Offset, Length: x.Length})
		}
	}
	return f
}

// Root lists the regular files of a disk's root filesystem (XFS or ext4) at off in r, size
// bytes long, with extents as offsets in r.
func Root(r io.ReaderAt, off, size int64) ([]filemap.File, error) {
	sec := io.NewSectionReader(r, off, size)
	var out []filemap.File
	if fx, err := xfs.Open(sec, size); err == nil {
		err = fx.Walk(func(e xfs.Entry) error {
			if e.Mode.IsRegular() {
				out = append(out, file(e.Path, e.Size, off, e.Extents))
			}
			return nil
		})
		return out, err
	} else if !errors.Is(err, xfs.ErrNotXFS) {
		return nil, err
	}
	fe, err := ext4.Open(sec, size)
	if errors.Is(err, ext4.ErrNotExt4) {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, err
	}
	err = fe.Walk(func(e ext4.Entry) error {
		if e.Mode.IsRegular() {
			out = append(out, file(e.Path, e.Size, off, e.Extents))
		}
		return nil
	})
	return out, err
}

// Squashfs lists the regular files of the squashfs at off in an original stream r (size bytes
// long), with extents as offsets of the expanded stream exp describes. Pieces in blocks that
// exp does not expand are left out.
func Squashfs(r io.ReaderAt, off, size int64, exp *filemap.Expansion) ([]filemap.File, error) {
	rd, err := squashfs.Open(io.NewSectionReader(r, off, size), size)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var out []filemap.File
	var pieces []filemap.Piece
	err = rd.Walk(func(e squashfs.Entry) error {
		if !e.Mode.IsRegular() {
			return nil
		}
		pieces = pieces[:0]
		for _, p := range e.Pieces {
			pieces = append(pieces, filemap.Piece(p))
		}
		out = append(out, filemap.File{Path: e.Path, Size: e.Size, Extents: exp.Locate(pieces, off)})
		return nil
	})
	return out, err
}

// Expansion describes precomp's expanded stream of an original of size bytes under plan.
func Expansion(plan *precomp.Plan, size int64) (*filemap.Expansion, error) {
	frames := make([]filemap.Frame, len(plan.Frames))
	var growth int64
	for i, f := range plan.Frames {
		frames[i] = filemap.Frame{Offset: f.Offset, Length: f.Length, Expanded: f.Expanded}
		growth += f.Expanded - f.Length
	}
	header := plan.ExpandedSize(size) - size - growth
	if header < 0 {
		return nil, fmt.Errorf("fslist: precomp plan with a header of %d bytes", header)
	}
	return filemap.NewExpansion(header, frames)
}

// Mounted puts files listed from a filesystem mounted at dir (say "boot", for the boot
// partition under the root tree a live image holds) under that directory.
func Mounted(files []filemap.File, dir string) []filemap.File {
	for i := range files {
		files[i].Path = dir + "/" + files[i].Path
	}
	return files
}

// Package sparsetar reads and writes a tar archive holding one file in GNU
// tar's old sparse format (tar --format=oldgnu --sparse), the way Google
// Compute Engine images are shipped: disk.raw with its holes left out. The
// header blocks are kept verbatim, so an archive is written again byte for
// byte from the file's contents. Like archive/tar it works on io.ReaderAt,
// io.Reader and io.Writer and knows nothing of files or recipes.
package sparsetar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

const block = 512

// maxHeader bounds the header blocks (main header and sparse extensions) and
// the kept trailer: 1 MiB holds a map of over 40000 segments.
const maxHeader = 1 << 20

// ErrNotTar means the data is not a tar archive this package understands.
var ErrNotTar = errors.New("sparsetar: not a tar archive")

// ErrUnsupported marks a valid tar archive this package cannot re-emit (more
// than one member, another member type, PAX sparse formats).
var ErrUnsupported = errors.New("sparsetar: unsupported archive")

// ErrCorrupt marks a header that contradicts itself.
var ErrCorrupt = errors.New("sparsetar: corrupt archive")

// Segment is a range of the file that the archive stores; the rest is zero.
type Segment struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// Layout is everything but the file's contents: Write needs nothing more.
type Layout struct {
	// Header holds the member's header blocks verbatim: the main header
	// and, for a sparse member, its extension blocks with the rest of the map.
	Header []byte `json:"header"`
	// TrailerSize is the number of bytes after the member's padded data
	// (end-of-archive blocks and record padding); Trailer holds them when
	// they are not all zero.
	TrailerSize int64  `json:"trailerSize"`
	Trailer     []byte `json:"trailer,omitempty"`
}

// Archive is a parsed archive.
type Archive struct {
	Layout
	Name     string
	RealSize int64 // size of the file
	Map      []Segment
	// DataOffset is where the stored segments start in the archive, back to back.
	DataOffset int64
	DataSize   int64
}

// Open parses the size-byte archive in r.
func Open(r io.ReaderAt, size int64) (*Archive, error) {
	if size < block {
		return nil, ErrNotTar
	}
	first := make([]byte, block)
	if err := readAt(r, first, 0); err != nil {
		return nil, err
	}
	n, err := headerBlocks(first)
	if err != nil {
		return nil, err
	}
	hdr := make([]byte, min(n*block, size/block*block))
	if err := readAt(r, hdr, 0); err != nil {
		return nil, err
	}
	a, err := parse(hdr)
	if err != nil {
		return nil, err
	}
	end := a.DataOffset + pad(a.DataSize)
	if end > size {
		return nil, fmt.Errorf("%w: %q: %d bytes of data at offset %#x run past the end of the %d-byte archive", ErrCorrupt, a.Name, a.DataSize, a.DataOffset, size)
	}
	if a.DataSize%block != 0 {
		tail := make([]byte, pad(a.DataSize)-a.DataSize)
		if err := readAt(r, tail, a.DataOffset+a.DataSize); err != nil {
			return nil, err
		}
		if !allZero(tail) {
			return nil, fmt.Errorf("%w: padding after the data of %q at offset %#x is not zero", ErrUnsupported, a.Name, a.DataOffset+a.DataSize)
		}
	}
	a.TrailerSize = size - end
	if a.TrailerSize > maxHeader {
		return nil, fmt.Errorf("%w: %d bytes after %q (a second member?)", ErrUnsupported, a.TrailerSize, a.Name)
	}
	t := make([]byte, a.TrailerSize)
	if err := readAt(r, t, end); err != nil {
		return nil, err
	}
	if !allZero(t) {
		a.Trailer = t
	}
	return a, nil
}

// Validate checks that l can be written.
func (l *Layout) Validate() error {
	_, err := parse(l.Header)
	if err == nil && l.Trailer != nil && int64(len(l.Trailer)) != l.TrailerSize {
		err = fmt.Errorf("%w: trailer of %d bytes, size says %d", ErrCorrupt, len(l.Trailer), l.TrailerSize)
	}
	if err == nil && (l.TrailerSize < 0 || l.TrailerSize > maxHeader) {
		err = fmt.Errorf("%w: trailer of %d bytes", ErrCorrupt, l.TrailerSize)
	}
	return err
}

// Parse returns the archive l describes (without reading any data).
func (l *Layout) Parse() (*Archive, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	a, _ := parse(l.Header)
	a.TrailerSize, a.Trailer = l.TrailerSize, l.Trailer
	return a, nil
}

// Size is the size of the archive.
func (a *Archive) Size() int64 { return a.DataOffset + pad(a.DataSize) + a.TrailerSize }

// File returns the archived file's contents, holes read as zeros, from the
// archive in r.
func (a *Archive) File(r io.ReaderAt) io.ReaderAt {
	v := &fileView{a: a, r: r, data: make([]int64, len(a.Map))}
	d := a.DataOffset
	for i, s := range a.Map {
		v.data[i] = d
		d += s.Length
	}
	return v
}

// Write writes the archive l describes, taking the file's contents from
// file, read sequentially: exactly RealSize bytes, zeros where the map has
// holes (holes are skipped, not checked).
func Write(w io.Writer, file io.Reader, l *Layout) error {
	a, err := l.Parse()
	if err != nil {
		return err
	}
	if _, err := w.Write(a.Header); err != nil {
		return err
	}
	pos := int64(0)
	for _, s := range a.Map {
		if _, err := io.CopyN(io.Discard, file, s.Offset-pos); err != nil {
			return fmt.Errorf("sparsetar: %s ends before offset %#x: %w", a.Name, s.Offset, unexpected(err))
		}
		if _, err := io.CopyN(w, file, s.Length); err != nil {
			return fmt.Errorf("sparsetar: %s: segment at offset %#x: %w", a.Name, s.Offset, unexpected(err))
		}
		pos = s.Offset + s.Length
	}
	if n, err := io.Copy(io.Discard, file); err != nil {
		return fmt.Errorf("sparsetar: %s: %w", a.Name, err)
	} else if pos+n != a.RealSize {
		return fmt.Errorf("sparsetar: %s has %d bytes, the archive holds %d", a.Name, pos+n, a.RealSize)
	}
	if _, err := w.Write(make([]byte, pad(a.DataSize)-a.DataSize)); err != nil {
		return err
	}
	if a.Trailer != nil {
		_, err = w.Write(a.Trailer)
		return err
	}
	zero := make([]byte, 32<<10)
	for n := a.TrailerSize; n > 0; {
		c := min(n, int64(len(zero)))
		if _, err := w.Write(zero[:c]); err != nil {
			return err
		}
		n -= c
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Field offsets of the old GNU header.
const (
	offSize       = 124
	offChksum     = 148
	offType       = 156
	offMagic      = 257
	offSparse     = 386
	offIsExtended = 482
	offRealSize   = 483
	extIsExtended = 504
	entryLen      = 24
)

// headerBlocks checks the first header block and returns how many header
// blocks the member has, following the sparse extension chain's flag in the
// first block only (parse checks the rest).
func headerBlocks(b []byte) (int64, error) {
	if allZero(b) {
		return 0, fmt.Errorf("%w: the archive is empty", ErrNotTar)
	}
	if err := checksum(b, 0); err != nil {
		return 0, err
	}
	switch b[offType] {
	case '0', 0:
		return 1, nil
	case 'S':
		if !bytes.Equal(b[offMagic:offMagic+len(Magic)], []byte(Magic)) {
			return 0, fmt.Errorf("%w: sparse member without the old GNU magic", ErrUnsupported)
		}
		// The chain length is only known by reading it; allow the bound.
		if b[offIsExtended] == 0 {
			return 1, nil
		}
		return maxHeader / block, nil
	}
	return 0, fmt.Errorf("%w: member type %q (want a regular or old GNU sparse file)", ErrUnsupported, b[offType])
}

// parse decodes the header blocks at the start of hdr (which may hold more
// than the member's headers: the result's Header is cut to them).
func parse(hdr []byte) (*Archive, error) {
	if len(hdr) < block {
		return nil, fmt.Errorf("%w: header of %d bytes", ErrCorrupt, len(hdr))
	}
	b := hdr[:block]
	if _, err := headerBlocks(b); err != nil {
		return nil, err
	}
	a := &Archive{Name: cstring(b[:100])}
	size, err := number(b[offSize:offSize+12], "size", 0)
	if err != nil {
		return nil, err
	}
	a.DataSize = size
	nblocks := int64(1)
	if b[offType] != 'S' {
		a.RealSize = size
		if size > 0 {
			a.Map = []Segment{{0, size}}
		}
	} else {
		if a.RealSize, err = number(b[offRealSize:offRealSize+12], "real size", 0); err != nil {
			return nil, err
		}
		entries := b[offSparse : offSparse+4*entryLen]
		ext := b[offIsExtended] != 0
		for {
			for i := 0; i+entryLen <= len(entries); i += entryLen {
				e := entries[i : i+entryLen]
				if e[0] == 0 {
					break
				}
				off, err := number(e[:12], "segment offset", nblocks-1)
				if err != nil {
					return nil, err
				}
				n, err := number(e[12:], "segment length", nblocks-1)
				if err != nil {
					return nil, err
				}
				a.Map = append(a.Map, Segment{off, n})
			}
			if !ext {
				break
			}
			if int64(len(hdr)) < (nblocks+1)*block {
				return nil, fmt.Errorf("%w: sparse map continues past offset %#x", ErrCorrupt, nblocks*block)
			}
			x := hdr[nblocks*block : (nblocks+1)*block]
			nblocks++
			entries, ext = x[:21*entryLen], x[extIsExtended] != 0
		}
	}
	a.DataOffset = nblocks * block
	a.Header = bytes.Clone(hdr[:a.DataOffset])
	sum, pos := int64(0), int64(0)
	for i, s := range a.Map {
		if s.Offset < pos || s.Length < 0 || s.Offset > a.RealSize-s.Length {
			return nil, fmt.Errorf("%w: %q: sparse map entry %d (%d bytes at %#x) overlaps or runs past the %d-byte file", ErrCorrupt, a.Name, i, s.Length, s.Offset, a.RealSize)
		}
		pos = s.Offset + s.Length
		sum += s.Length
	}
	if sum != a.DataSize {
		return nil, fmt.Errorf("%w: %q: the sparse map holds %d bytes, the header says %d", ErrCorrupt, a.Name, sum, a.DataSize)
	}
	return a, nil
}

// checksum verifies a header block's checksum (unsigned, as POSIX says, or
// signed, as old tars wrote it); blk numbers the block for the message.
func checksum(b []byte, blk int64) error {
	want, err := number(b[offChksum:offChksum+8], "checksum", blk)
	if err != nil {
		return err
	}
	var u, s int64
	for i, c := range b {
		if i >= offChksum && i < offChksum+8 {
			c = ' '
		}
		u += int64(c)
		s += int64(int8(c))
	}
	if want != u && want != s {
		return fmt.Errorf("%w: header at offset %#x: checksum %d, the block sums to %d", ErrNotTar, blk*block, want, u)
	}
	return nil
}

// number parses a numeric field: octal digits ended by NUL or space, or
// GNU's base-256 (high bit of the first byte set, positive only).
func number(f []byte, what string, blk int64) (int64, error) {
	if len(f) > 0 && f[0]&0x80 != 0 {
		if f[0] != 0x80 {
			return 0, fmt.Errorf("%w: header at offset %#x: negative or huge %s", ErrCorrupt, blk*block, what)
		}
		var v int64
		for _, c := range f[1:] {
			if v > (1<<62)>>8 {
				return 0, fmt.Errorf("%w: header at offset %#x: %s overflows", ErrCorrupt, blk*block, what)
			}
			v = v<<8 | int64(c)
		}
		return v, nil
	}
	s := string(bytes.Trim(f, " \x00"))
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 8, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%w: header at offset %#x: %s %q", ErrCorrupt, blk*block, what, s)
	}
	return v, nil
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func pad(n int64) int64 { return (n + block - 1) / block * block }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("sparsetar: read at offset %#x: %w", off, err)
}

// fileView is the archived file: stored segments, zeros between them.
type fileView struct {
	a    *Archive
	r    io.ReaderAt
	data []int64 // where each segment's bytes start in the archive
}

func (v *fileView) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("sparsetar: negative offset")
	}
	if off >= v.a.RealSize {
		return 0, io.EOF
	}
	asked := len(p)
	want := min(int64(len(p)), v.a.RealSize-off)
	p = p[:want]
	clear(p)
	// Segments are sorted: find the first one that ends after off.
	lo, hi := 0, len(v.a.Map)
	for lo < hi {
		m := (lo + hi) / 2
		if s := v.a.Map[m]; s.Offset+s.Length <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for i := lo; i < len(v.a.Map); i++ {
		s := v.a.Map[i]
		if s.Offset >= off+want {
			break
		}
		from, to := max(s.Offset, off), min(s.Offset+s.Length, off+want)
		if from < to {
			if err := readAt(v.r, p[from-off:to-off], v.data[i]+from-s.Offset); err != nil {
				return 0, err
			}
		}
	}
	if want < int64(asked) {
		return int(want), io.EOF
	}
	return int(want), nil
}

// Package zipmember reads and writes zip archives that hold exactly one
// member, as Fedora CoreOS ships the hyperv VHDX (zip -9j: Info-ZIP's zip,
// deflated, no directory names). It splits such an archive into the member's
// raw (stored or deflated) bytes and a Layout, the few hundred bytes around
// them kept verbatim: everything before the data (the local header with its
// name and extra fields), and everything after (a data descriptor if any, the
// central directory, Zip64 records, the end record and its comment). The
// archive is the Layout's head, the raw data, the Layout's tail.
//
// Re-making the deflate stream from the member's contents is not this
// package's job: a stored member's raw data is the file itself; a deflated
// one's is a deflate stream that a caller must reproduce (Reader gives the
// contents). Like archive/zip, the package works on io.ReaderAt and io.Writer
// and knows nothing of files.
package zipmember

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"time"
)

// Compression methods.
const (
	Store   = 0
	Deflate = 8
)

// Record signatures and fixed sizes.
const (
	sigLocal      = 0x04034b50
	sigCentral    = 0x02014b50
	sigEnd        = 0x06054b50
	sigEnd64      = 0x06064b50
	sigLocator64  = 0x07064b50
	sigDescriptor = 0x08074b50
	localLen      = 30
	centralLen    = 46
	endLen        = 22
	locator64Len  = 20
	end64Len      = 56
	flagDescr     = 1 << 3
	flagEncrypted = 1
	zip64Extra    = 0x0001
)

// ErrNotZip means the data has no zip end record.
var ErrNotZip = errors.New("zipmember: not a zip archive (no end of central directory record)")

// ErrFormat marks an archive that is damaged or contradicts itself.
var ErrFormat = errors.New("zipmember: bad zip archive")

// ErrUnsupported marks a valid archive this package does not handle (more
// than one member, encryption, multiple disks).
var ErrUnsupported = errors.New("zipmember: unsupported")

// Sniff reports whether b starts like a zip archive with a local header.
func Sniff(b []byte) bool { return bytes.HasPrefix(b, []byte("PK\x03\x04")) }

// Member describes the one member, from the central directory.
type Member struct {
	Name             string
	Method           uint16
	Flags            uint16
	CRC32            uint32
	CompressedSize   int64
	UncompressedSize int64
	Modified         time.Time // MS-DOS time, local time read as UTC
	Zip64            bool      // sizes or offsets in Zip64 extra fields
}

// Archive is an opened one-member zip archive.
type Archive struct {
	r        io.ReaderAt
	size     int64
	Member   Member
	DataOff  int64 // where the member's raw data starts
	localOff int64
}

// Size is the size of the archive.
func (a *Archive) Size() int64 { return a.size }

func readAt(r io.ReaderAt, b []byte, off, size int64, what string) error {
	if off < 0 || off+int64(len(b)) > size {
		return fmt.Errorf("%w: %s at offset %#x (%d bytes) is past the end of the %d-byte archive", ErrFormat, what, off, len(b), size)
	}
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("zipmember: read %s at offset %#x: %w", what, off, err)
}

// findEnd finds the end of central directory record (it may be followed by
// a comment of up to 65535 bytes).
func findEnd(r io.ReaderAt, size int64) (int64, []byte, error) {
	n := min(size, endLen+65535)
	b := make([]byte, n)
	if err := readAt(r, b, size-n, size, "archive tail"); err != nil {
		return 0, nil, err
	}
	for i := len(b) - endLen; i >= 0; i-- {
		if binary.LittleEndian.Uint32(b[i:]) == sigEnd && i+endLen+int(binary.LittleEndian.Uint16(b[i+20:])) == len(b) {
			return size - n + int64(i), b[i : i+endLen], nil
		}
	}
	return 0, nil, ErrNotZip
}

// zip64Fields reads the Zip64 extended information extra field: each of the
// wanted values that is all ones in the fixed header comes from it, in order.
func zip64Fields(extra []byte, want []*int64, where string) (bool, error) {
	le := binary.LittleEndian
	for len(extra) >= 4 {
		id, n := le.Uint16(extra), int(le.Uint16(extra[2:]))
		if 4+n > len(extra) {
			return false, fmt.Errorf("%w: %s: extra field %#04x runs past the extra data", ErrFormat, where, id)
		}
		if id == zip64Extra {
			b := extra[4 : 4+n]
			for _, p := range want {
				if *p != -1 {
					continue
				}
				if len(b) < 8 {
					return true, fmt.Errorf("%w: %s: Zip64 extra field too short", ErrFormat, where)
				}
				*p = int64(le.Uint64(b))
				if *p < 0 {
					return true, fmt.Errorf("%w: %s: Zip64 value %#x too large", ErrFormat, where, uint64(*p))
				}
				b = b[8:]
			}
			return true, nil
		}
		extra = extra[4+n:]
	}
	for _, p := range want {
		if *p == -1 {
			return false, fmt.Errorf("%w: %s: a size or offset is 0xffffffff without a Zip64 extra field", ErrFormat, where)
		}
	}
	return false, nil
}

// u32 widens a 32-bit field, all ones meaning "in the Zip64 extra field" (-1).
func u32(v uint32) int64 {
	if v == 0xffffffff {
		return -1
	}
	return int64(v)
}

// Open parses the size-byte archive in r, which must hold one member.
func Open(r io.ReaderAt, size int64) (*Archive, error) {
	le := binary.LittleEndian
	endOff, end, err := findEnd(r, size)
	if err != nil {
		return nil, err
	}
	if le.Uint16(end[4:]) != 0 || le.Uint16(end[6:]) != 0 {
		return nil, fmt.Errorf("%w: end record at offset %#x: a multi-disk archive", ErrUnsupported, endOff)
	}
	count, cdSize, cdOff := int64(le.Uint16(end[10:])), u32(le.Uint32(end[12:])), u32(le.Uint32(end[16:]))
	if count == 0xffff || cdSize == -1 || cdOff == -1 {
		loc := make([]byte, locator64Len)
		if err := readAt(r, loc, endOff-locator64Len, size, "Zip64 end locator"); err != nil {
			return nil, err
		}
		if le.Uint32(loc) != sigLocator64 {
			return nil, fmt.Errorf("%w: end record at offset %#x needs Zip64 but no locator precedes it", ErrFormat, endOff)
		}
		e64Off := int64(le.Uint64(loc[8:]))
		e64 := make([]byte, end64Len)
		if err := readAt(r, e64, e64Off, size, "Zip64 end record"); err != nil {
			return nil, err
		}
		if le.Uint32(e64) != sigEnd64 {
			return nil, fmt.Errorf("%w: no Zip64 end record at offset %#x", ErrFormat, e64Off)
		}
		count, cdSize, cdOff = int64(le.Uint64(e64[32:])), int64(le.Uint64(e64[40:])), int64(le.Uint64(e64[48:]))
	}
	if count != 1 {
		return nil, fmt.Errorf("%w: end record at offset %#x counts %d members, this package handles one", ErrUnsupported, endOff, count)
	}
	if cdSize < centralLen || cdSize > 1<<20 || cdOff < 0 || cdOff+cdSize > endOff {
		return nil, fmt.Errorf("%w: central directory at offset %#x (%d bytes) does not fit before the end record at %#x", ErrFormat, cdOff, cdSize, endOff)
	}
	cd := make([]byte, cdSize)
	if err := readAt(r, cd, cdOff, size, "central directory"); err != nil {
		return nil, err
	}
	if le.Uint32(cd) != sigCentral {
		return nil, fmt.Errorf("%w: no central directory header at offset %#x", ErrFormat, cdOff)
	}
	nameLen, extraLen, commentLen := int64(le.Uint16(cd[28:])), int64(le.Uint16(cd[30:])), int64(le.Uint16(cd[32:]))
	if centralLen+nameLen+extraLen+commentLen != cdSize {
		return nil, fmt.Errorf("%w: central directory header at offset %#x is %d bytes, the directory %d", ErrFormat, cdOff, centralLen+nameLen+extraLen+commentLen, cdSize)
	}
	m := Member{
		Flags: le.Uint16(cd[8:]), Method: le.Uint16(cd[10:]), CRC32: le.Uint32(cd[16:]),
		CompressedSize: u32(le.Uint32(cd[20:])), UncompressedSize: u32(le.Uint32(cd[24:])),
		Name:     string(cd[centralLen : centralLen+nameLen]),
		Modified: dosTime(le.Uint16(cd[14:]), le.Uint16(cd[12:])),
	}
	localOff := u32(le.Uint32(cd[42:]))
	if le.Uint16(cd[34:]) != 0 {
		return nil, fmt.Errorf("%w: central directory header at offset %#x: member on another disk", ErrUnsupported, cdOff)
	}
	where := fmt.Sprintf("central directory header at offset %#x", cdOff)
	if m.Zip64, err = zip64Fields(cd[centralLen+nameLen:centralLen+nameLen+extraLen], []*int64{&m.UncompressedSize, &m.CompressedSize, &localOff}, where); err != nil {
		return nil, err
	}
	if m.Flags&flagEncrypted != 0 {
		return nil, fmt.Errorf("%w: member %q is encrypted", ErrUnsupported, m.Name)
	}
	if m.Method != Store && m.Method != Deflate {
		return nil, fmt.Errorf("%w: member %q: compression method %d, this package reads stored (0) and deflated (8) members", ErrUnsupported, m.Name, m.Method)
	}
	lh := make([]byte, localLen)
	if err := readAt(r, lh, localOff, size, "local header"); err != nil {
		return nil, err
	}
	if le.Uint32(lh) != sigLocal {
		return nil, fmt.Errorf("%w: no local header at offset %#x", ErrFormat, localOff)
	}
	if le.Uint16(lh[8:]) != m.Method {
		return nil, fmt.Errorf("%w: local header at offset %#x says method %d, the central directory %d", ErrFormat, localOff, le.Uint16(lh[8:]), m.Method)
	}
	dataOff := localOff + localLen + int64(le.Uint16(lh[26:])) + int64(le.Uint16(lh[28:]))
	if dataOff+m.CompressedSize > cdOff {
		return nil, fmt.Errorf("%w: member %q data at offset %#x (%d bytes) runs into the central directory at %#x", ErrFormat, m.Name, dataOff, m.CompressedSize, cdOff)
	}
	return &Archive{r: r, size: size, Member: m, DataOff: dataOff, localOff: localOff}, nil
}

// dosTime decodes an MS-DOS date and time.
func dosTime(d, t uint16) time.Time {
	return time.Date(int(d>>9)+1980, time.Month(d>>5&0xf), int(d&0x1f), int(t>>11), int(t>>5&0x3f), int(t&0x1f)*2, 0, time.UTC)
}

// Raw returns the member's raw (stored or deflated) bytes.
func (a *Archive) Raw() *io.SectionReader {
	return io.NewSectionReader(a.r, a.DataOff, a.Member.CompressedSize)
}

// Reader returns the member's contents, inflated if need be; its last Read
// checks the size and CRC-32 the central directory gives.
func (a *Archive) Reader() io.ReadCloser {
	var rc io.ReadCloser = io.NopCloser(a.Raw())
	if a.Member.Method == Deflate {
		rc = flate.NewReader(a.Raw())
	}
	return &checkReader{rc: rc, m: &a.Member, h: crc32.NewIEEE()}
}

type checkReader struct {
	rc io.ReadCloser
	m  *Member
	h  hash.Hash32
	n  int64
}

func (c *checkReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if err == io.EOF {
		if c.n != c.m.UncompressedSize {
			return n, fmt.Errorf("%w: member %q holds %d bytes, the central directory says %d", ErrFormat, c.m.Name, c.n, c.m.UncompressedSize)
		}
		if s := c.h.Sum32(); s != c.m.CRC32 {
			return n, fmt.Errorf("%w: member %q has CRC-32 %#08x, the central directory says %#08x", ErrFormat, c.m.Name, s, c.m.CRC32)
		}
	} else if err != nil && c.m.Method == Deflate {
		err = fmt.Errorf("%w: member %q: inflate: %v", ErrFormat, c.m.Name, err)
	}
	return n, err
}

func (c *checkReader) Close() error { return c.rc.Close() }

// Layout describes the archive around the member's raw data, verbatim.
type Layout struct {
	// Head is every byte before the raw data: the local header, its name
	// and extra fields (and anything before it).
	Head []byte `json:"head"`
	// DataSize is the size of the raw data.
	DataSize int64 `json:"dataSize"`
	// Tail is every byte after the raw data: the data descriptor if any,
	// the central directory, Zip64 records, the end record and its comment.
	Tail []byte `json:"tail"`
}

// maxTail bounds Tail: a one-member archive's central directory and end
// record take a few hundred bytes, a comment up to 64 KiB.
const maxTail = 1 << 20

// Layout reads the bytes around the raw data.
func (a *Archive) Layout() (*Layout, error) {
	end := a.DataOff + a.Member.CompressedSize
	if a.DataOff > maxTail || a.size-end > maxTail {
		return nil, fmt.Errorf("%w: %d bytes before member %q's data and %d after it, more than %d", ErrUnsupported, a.DataOff, a.Member.Name, a.size-end, maxTail)
	}
	l := &Layout{Head: make([]byte, a.DataOff), DataSize: a.Member.CompressedSize, Tail: make([]byte, a.size-end)}
	if err := readAt(a.r, l.Head, 0, a.size, "local header"); err != nil {
		return nil, err
	}
	if err := readAt(a.r, l.Tail, end, a.size, "central directory"); err != nil {
		return nil, err
	}
	return l, nil
}

// Size is the size of the archive.
func (l *Layout) Size() int64 { return int64(len(l.Head)) + l.DataSize + int64(len(l.Tail)) }

// Archive parses the layout as an archive whose raw data reads as zeros.
func (l *Layout) Archive() (*Archive, error) {
	return Open(layoutReader{l}, l.Size())
}

// Validate checks that the layout is a one-member archive whose raw data is
// DataSize bytes where the head ends.
func (l *Layout) Validate() error {
	if l.DataSize < 0 || len(l.Head) > maxTail || len(l.Tail) > maxTail {
		return fmt.Errorf("%w: layout of %d+%d bytes around %d bytes of data", ErrFormat, len(l.Head), len(l.Tail), l.DataSize)
	}
	a, err := l.Archive()
	if err != nil {
		return err
	}
	if a.DataOff != int64(len(l.Head)) || a.Member.CompressedSize != l.DataSize {
		return fmt.Errorf("%w: layout's head is %d bytes and data %d, its headers say data at %#x, %d bytes", ErrFormat, len(l.Head), l.DataSize, a.DataOff, a.Member.CompressedSize)
	}
	return nil
}

type layoutReader struct{ l *Layout }

func (r layoutReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	h, d := int64(len(r.l.Head)), r.l.DataSize
	if off < h {
		copy(p, r.l.Head[off:])
	}
	if t := off + int64(len(p)) - (h + d); t > 0 {
		start := max(0, off-(h+d))
		copy(p[max(0, h+d-off):], r.l.Tail[min(start, int64(len(r.l.Tail))):])
	}
	if end := r.l.Size() - off; end < int64(len(p)) {
		return int(max(0, end)), io.EOF
	}
	return len(p), nil
}

// Write writes the archive: the head, exactly DataSize bytes of raw data
// (which must end there), the tail. For a stored member it checks the
// data's CRC-32 against the central directory's.
func Write(w io.Writer, raw io.Reader, l *Layout) error {
	if err := l.Validate(); err != nil {
		return err
	}
	a, _ := l.Archive()
	if _, err := w.Write(l.Head); err != nil {
		return err
	}
	h := crc32.NewIEEE()
	src := raw
	if a.Member.Method == Store {
		src = io.TeeReader(raw, h)
	}
	n, err := io.Copy(w, io.LimitReader(src, l.DataSize))
	if err != nil {
		return fmt.Errorf("zipmember: member %q data: %w", a.Member.Name, err)
	}
	if n != l.DataSize {
		return fmt.Errorf("zipmember: member %q data ends at %d bytes, the archive holds %d: %w", a.Member.Name, n, l.DataSize, io.ErrUnexpectedEOF)
	}
	var one [1]byte
	if m, _ := io.ReadFull(raw, one[:]); m > 0 {
		return fmt.Errorf("zipmember: member %q data is longer than the archive's %d bytes", a.Member.Name, l.DataSize)
	}
	if a.Member.Method == Store && h.Sum32() != a.Member.CRC32 {
		return fmt.Errorf("%w: stored member %q data has CRC-32 %#08x, the central directory says %#08x", ErrFormat, a.Member.Name, h.Sum32(), a.Member.CRC32)
	}
	_, err = w.Write(l.Tail)
	return err
}

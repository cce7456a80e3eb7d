package vmdk

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
)

// ErrNotOVA means the data is not a tar archive this package can re-emit.
var ErrNotOVA = errors.New("vmdk: not an OVA (tar) archive")

// OVA is a tar archive (an .ova holds the .ovf descriptor, the .mf manifest
// and the disks) described closely enough to write it again byte for byte:
// each member's raw header blocks are kept verbatim, the contents are not.
type OVA struct {
	Members []OVAMember `json:"members"`
	// TrailerSize is the number of bytes after the last member's padded
	// contents (end-of-archive blocks and record padding).
	TrailerSize int64 `json:"trailerSize"`
	// Trailer holds those bytes when they are not all zero.
	Trailer []byte `json:"trailer,omitempty"`
}

// OVAMember is one file of an OVA.
type OVAMember struct {
	Name string `json:"name"`
	// Offset is where the member's first header block starts (extended
	// headers included) and DataOffset where its contents start.
	Offset     int64 `json:"offset"`
	DataOffset int64 `json:"dataOffset"`
	Size       int64 `json:"size"`
	// RawHeader is the bytes from Offset to DataOffset, verbatim.
	RawHeader []byte `json:"rawHeader"`
	// PadSize is the number of bytes after the contents up to the next
	// 512-byte block (fewer if the archive ends there), and Pad holds them
	// when they are not all zero.
	PadSize int64  `json:"padSize"`
	Pad     []byte `json:"pad,omitempty"`
	// Header is RawHeader as archive/tar parses it.
	Header *tar.Header `json:"-"`
}

// Open returns the member's contents within the archive r.
func (m *OVAMember) Open(r io.ReaderAt) *io.SectionReader {
	return io.NewSectionReader(r, m.DataOffset, m.Size)
}

// Find returns the first member with the given name, or nil.
func (o *OVA) Find(name string) *OVAMember {
	for i := range o.Members {
		if o.Members[i].Name == name {
			return &o.Members[i]
		}
	}
	return nil
}

// maxOVAHeader bounds the raw header blocks of one member (PAX records and
// GNU long names included) and the kept trailer.
const maxOVAHeader = 1 << 20

// ReadOVA lists the members of the tar archive of size bytes in r, with
// their offsets and raw headers. Sparse members are not supported.
func ReadOVA(r io.ReaderAt, size int64) (*OVA, error) {
	cr := &countingReader{r: io.NewSectionReader(r, 0, size)}
	tr := tar.NewReader(cr)
	o := &OVA{}
	prevEnd := int64(0)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: member %d at offset %#x: %w", ErrNotOVA, len(o.Members), prevEnd, err)
		}
		if h.Typeflag == tar.TypeGNUSparse || len(h.PAXRecords["GNU.sparse.map"]) > 0 || h.PAXRecords["GNU.sparse.major"] != "" {
			return nil, fmt.Errorf("%w: sparse member %q", ErrUnsupported, h.Name)
		}
		m := OVAMember{Name: h.Name, Offset: prevEnd, DataOffset: cr.pos, Size: h.Size, Header: h}
		if m.DataOffset-m.Offset > maxOVAHeader {
			return nil, fmt.Errorf("%w: member %q has %d bytes of headers", ErrUnsupported, h.Name, m.DataOffset-m.Offset)
		}
		if h.Size < 0 || h.Size > size-m.DataOffset {
			return nil, fmt.Errorf("%w: member %q at offset %#x: %d bytes run past the end of the %d-byte archive", ErrNotOVA, h.Name, m.Offset, h.Size, size)
		}
		m.RawHeader = make([]byte, m.DataOffset-m.Offset)
		if err := readAt(r, m.RawHeader, m.Offset); err != nil {
			return nil, fmt.Errorf("vmdk: ova: read header of %q at offset %#x: %w", h.Name, m.Offset, err)
		}
		end := m.DataOffset + m.Size
		padded := min((end+511)/512*512, size)
		m.PadSize = padded - end
		if padded > end {
			pad := make([]byte, padded-end)
			if err := readAt(r, pad, end); err != nil {
				return nil, fmt.Errorf("vmdk: ova: read padding of %q at offset %#x: %w", h.Name, end, err)
			}
			if !allZero(pad) {
				m.Pad = pad
			}
		}
		prevEnd = padded
		o.Members = append(o.Members, m)
	}
	if len(o.Members) == 0 {
		return nil, fmt.Errorf("%w: no members", ErrNotOVA)
	}
	o.TrailerSize = size - prevEnd
	if o.TrailerSize > maxOVAHeader {
		return nil, fmt.Errorf("%w: %d bytes after the last member", ErrUnsupported, o.TrailerSize)
	}
	t := make([]byte, o.TrailerSize)
	if err := readAt(r, t, prevEnd); err != nil {
		return nil, fmt.Errorf("vmdk: ova: read trailer at offset %#x: %w", prevEnd, err)
	}
	if !allZero(t) {
		o.Trailer = t
	}
	return o, nil
}

// WriteOVA writes the archive o describes, taking each member's contents
// from open (exactly Size bytes are read). Given what ReadOVA returned and
// the original contents, the output equals the original archive.
func WriteOVA(w io.Writer, o *OVA, open func(m *OVAMember) (io.Reader, error)) error {
	for i := range o.Members {
		m := &o.Members[i]
		if _, err := w.Write(m.RawHeader); err != nil {
			return err
		}
		r, err := open(m)
		if err != nil {
			return fmt.Errorf("vmdk: ova: member %q: %w", m.Name, err)
		}
		n, err := io.Copy(w, io.LimitReader(r, m.Size))
		if err != nil {
			return fmt.Errorf("vmdk: ova: member %q: %w", m.Name, err)
		}
		if n != m.Size {
			return fmt.Errorf("vmdk: ova: member %q: got %d of %d bytes: %w", m.Name, n, m.Size, io.ErrUnexpectedEOF)
		}
		if m.Pad != nil {
			_, err = w.Write(m.Pad)
		} else {
			err = emitZeros(writerEmitter{w}, m.PadSize, -1)
		}
		if err != nil {
			return err
		}
	}
	if o.Trailer != nil {
		_, err := w.Write(o.Trailer)
		return err
	}
	return emitZeros(writerEmitter{w}, o.TrailerSize, -1)
}

// countingReader tracks the offset archive/tar has consumed; tar reads
// headers in whole blocks and skips contents with Seek, never reading ahead.
type countingReader struct {
	r   *io.SectionReader
	pos int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.pos += int64(n)
	return n, err
}

func (c *countingReader) Seek(off int64, whence int) (int64, error) {
	n, err := c.r.Seek(off, whence)
	if err == nil {
		c.pos = n
	}
	return n, err
}

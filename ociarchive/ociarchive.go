// Package ociarchive reads and writes tar archives byte for byte from their
// headers and the data of their members, as Fedora CoreOS's kubevirt
// .ociarchive: an OCI image layout (oci-layout, index.json, blobs/sha256/...)
// that osbuild's org.osbuild.oci-archive stage packs with GNU tar
// (--format=posix --sort=name --owner=0 --group=0 --numeric-owner
// --mtime=@EPOCH), one blob of which is the gzip-compressed layer holding the
// qcow2.
//
// Open walks the archive's 512-byte blocks; Layout keeps every header
// verbatim (with the pax extended headers and GNU long names before it, and
// GNU sparse extension blocks after it), the data of the small members (the
// JSON files), and names the members whose data the caller supplies at write
// time (the layer blobs: Layers finds them through index.json and the
// manifest). Write puts them back together. Nothing is re-encoded, so any tar
// writer's output comes back, as long as its padding and end-of-archive
// blocks are zeros.
//
// The same works for any tar whose big members come from elsewhere (the
// layer's own tar of /disk/*.qcow2, once its gzip is undone). Like
// archive/tar, the package works on io.ReaderAt, io.Reader and io.Writer and
// knows nothing of files.
package ociarchive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const block = 512

// ErrNotTar means the data does not start with a tar header.
var ErrNotTar = errors.New("ociarchive: not a tar archive")

// ErrFormat marks an archive that is damaged or contradicts itself.
var ErrFormat = errors.New("ociarchive: bad tar archive")

// ErrUnsupported marks a valid archive this package cannot keep byte for byte
// (non-zero padding, too many inline bytes) or an OCI layout it cannot follow.
var ErrUnsupported = errors.New("ociarchive: unsupported")

// Member is one archive member: a header (with its prefix records) and data.
type Member struct {
	Name      string // after pax path and GNU long names
	Typeflag  byte
	HeaderOff int64 // where its first record (pax, long name or the header) starts
	DataOff   int64 // where its data starts
	Size      int64 // bytes of data (the pax size when there is one)
}

// HeaderLen is how many bytes of header records precede the data.
func (m *Member) HeaderLen() int64 { return m.DataOff - m.HeaderOff }

// padded rounds n up to whole blocks.
func padded(n int64) int64 { return (n + block - 1) / block * block }

// Archive is an opened tar archive.
type Archive struct {
	r       io.ReaderAt
	size    int64
	Members []Member
	// EndOff is where the end-of-archive blocks start (zeros to the end).
	EndOff int64
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
	return fmt.Errorf("ociarchive: read %s at offset %#x: %w", what, off, err)
}

// octal parses a numeric header field: octal digits, or base-256 when the
// top bit of its first byte is set.
func octal(b []byte) (int64, bool) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		if b[0]&0x40 != 0 {
			return 0, false // negative
		}
		var v int64
		for i, c := range b {
			if i == 0 {
				c &= 0x7f
			}
			if v > (1<<63-1)>>8 {
				return 0, false
			}
			v = v<<8 | int64(c)
		}
		return v, true
	}
	s := strings.TrimRight(strings.TrimLeft(string(b), " "), " \x00")
	if s == "" {
		return 0, true
	}
	v, err := strconv.ParseInt(s, 8, 64)
	return v, err == nil && v >= 0
}

// checksumOK checks a header block's checksum (unsigned sum, the field as spaces).
func checksumOK(h []byte) bool {
	want, ok := octal(h[148:156])
	if !ok {
		return false
	}
	var sum int64
	for i, c := range h {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	return sum == want
}

// cstring is a NUL-terminated header field.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// maxRecord bounds a pax or long-name record's data.
const maxRecord = 1 << 20

// paxRecords parses "%d key=value\n" records.
func paxRecords(b []byte, off int64) (map[string]string, error) {
	recs := map[string]string{}
	for len(b) > 0 {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return nil, fmt.Errorf("%w: pax record at offset %#x has no length", ErrFormat, off)
		}
		n, err := strconv.Atoi(string(b[:sp]))
		if err != nil || n <= sp+1 || n > len(b) || b[n-1] != '\n' {
			return nil, fmt.Errorf("%w: pax record at offset %#x has a bad length %q", ErrFormat, off, b[:sp])
		}
		kv := string(b[sp+1 : n-1])
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%w: pax record at offset %#x has no '='", ErrFormat, off)
		}
		recs[k] = v
		b, off = b[n:], off+int64(n)
	}
	return recs, nil
}

// Open walks the size-byte tar archive in r.
func Open(r io.ReaderAt, size int64) (*Archive, error) {
	a := &Archive{r: r, size: size}
	if size < block {
		return nil, ErrNotTar
	}
	h := make([]byte, block)
	off := int64(0)
	start := int64(-1) // offset of the current member's first prefix record
	var name string    // long name or pax path for the next header
	var paxSize int64 = -1
	for {
		if off+block > size {
			return nil, fmt.Errorf("%w: archive ends at offset %#x without end-of-archive blocks", ErrFormat, off)
		}
		if err := readAt(r, h, off, size, "header"); err != nil {
			return nil, err
		}
		if bytes.Equal(h, zeros[:block]) {
			if start >= 0 {
				return nil, fmt.Errorf("%w: records at offset %#x precede no header", ErrFormat, start)
			}
			break
		}
		if !checksumOK(h) {
			if off == 0 {
				return nil, ErrNotTar
			}
			return nil, fmt.Errorf("%w: header at offset %#x has a bad checksum", ErrFormat, off)
		}
		if start < 0 {
			start = off
		}
		flag := h[156]
		sz, ok := octal(h[124:136])
		if !ok {
			return nil, fmt.Errorf("%w: header at offset %#x has a bad size field %q", ErrFormat, off, h[124:136])
		}
		dataOff := off + block
		if flag == 'S' && h[482] != 0 {
			// GNU sparse: extension blocks of the sparse map follow the header.
			for ext := h[482]; ext != 0; dataOff += block {
				e := make([]byte, block)
				if err := readAt(r, e, dataOff, size, "sparse extension block"); err != nil {
					return nil, err
				}
				ext = e[504]
			}
		}
		switch flag {
		case 'x', 'L', 'K':
			if sz > maxRecord {
				return nil, fmt.Errorf("%w: %c record at offset %#x is %d bytes", ErrUnsupported, flag, off, sz)
			}
			d := make([]byte, sz)
			if err := readAt(r, d, dataOff, size, "record"); err != nil {
				return nil, err
			}
			switch flag {
			case 'x':
				recs, err := paxRecords(d, dataOff)
				if err != nil {
					return nil, err
				}
				if p, ok := recs["path"]; ok {
					name = p
				}
				if p, ok := recs["GNU.sparse.name"]; ok {
					name = p // pax sparse 1.0: the header names GNUSparseFile.N/...
				}
				if s, ok := recs["size"]; ok {
					if paxSize, err = strconv.ParseInt(s, 10, 64); err != nil || paxSize < 0 {
						return nil, fmt.Errorf("%w: pax record at offset %#x: bad size %q", ErrFormat, dataOff, s)
					}
				}
			case 'L':
				name = cstring(d)
			}
			if err := a.checkPad(dataOff+sz, padded(sz)-sz); err != nil {
				return nil, err
			}
			off = dataOff + padded(sz)
			continue
		}
		if paxSize >= 0 {
			sz = paxSize
		}
		if name == "" {
			name = cstring(h[0:100])
			if string(h[257:262]) == "ustar" {
				if p := cstring(h[345:500]); p != "" && h[263] == '0' { // POSIX prefix, not GNU's fields there
					name = p + "/" + name
				}
			}
		}
		if flag >= '1' && flag <= '6' && flag != '5' && sz != 0 {
			return nil, fmt.Errorf("%w: %c header at offset %#x claims %d bytes of data", ErrUnsupported, flag, off, sz)
		}
		if flag == '1' || flag == '2' {
			sz = 0
		}
		if dataOff+padded(sz) > size {
			return nil, fmt.Errorf("%w: member %q at offset %#x: %d bytes of data run past the end of the %d-byte archive", ErrFormat, name, off, sz, size)
		}
		a.Members = append(a.Members, Member{Name: name, Typeflag: flag, HeaderOff: start, DataOff: dataOff, Size: sz})
		if err := a.checkPad(dataOff+sz, padded(sz)-sz); err != nil {
			return nil, err
		}
		off = dataOff + padded(sz)
		start, name, paxSize = -1, "", -1
	}
	a.EndOff = off
	if err := a.checkPad(off, size-off); err != nil {
		return nil, err
	}
	return a, nil
}

var zeros = make([]byte, 64<<10)

// checkPad checks that n bytes at off are zeros (padding, end of archive).
func (a *Archive) checkPad(off, n int64) error {
	b := make([]byte, min(n, int64(len(zeros))))
	for n > 0 {
		k := min(n, int64(len(b)))
		if err := readAt(a.r, b[:k], off, a.size, "padding"); err != nil {
			return err
		}
		if !bytes.Equal(b[:k], zeros[:k]) {
			return fmt.Errorf("%w: padding at offset %#x is not zeros", ErrUnsupported, off)
		}
		off, n = off+k, n-k
	}
	return nil
}

// Find returns the first member named name, or nil.
func (a *Archive) Find(name string) *Member {
	for i := range a.Members {
		if a.Members[i].Name == name {
			return &a.Members[i]
		}
	}
	return nil
}

// Data returns a member's data.
func (a *Archive) Data(m *Member) *io.SectionReader {
	return io.NewSectionReader(a.r, m.DataOff, m.Size)
}

// readSmall reads a member's data if it is at most max bytes.
func (a *Archive) readSmall(m *Member, max int64) ([]byte, error) {
	if m.Size > max {
		return nil, fmt.Errorf("%w: member %q is %d bytes, more than %d", ErrUnsupported, m.Name, m.Size, max)
	}
	b := make([]byte, m.Size)
	return b, readAt(a.r, b, m.DataOff, a.size, "member "+m.Name)
}

// Layout describes the archive closely enough to write it again from the
// data of its external members.
type Layout struct {
	Members []LayoutMember `json:"members"`
	// End is how many zero bytes end the archive (end-of-archive blocks and
	// the padding to tar's record size).
	End int64 `json:"end"`
}

// LayoutMember is one member: its header records verbatim and either its
// data or, for an external member, only its size.
type LayoutMember struct {
	Header   []byte `json:"header"`
	Size     int64  `json:"size"`
	Data     []byte `json:"data,omitempty"`
	External bool   `json:"external,omitempty"`
}

// maxInline bounds the data a layout carries itself.
const maxInline = 64 << 20

// Layout reads every header and the data of every member not named in
// external (each name must exist).
func (a *Archive) Layout(external ...string) (*Layout, error) {
	ext := map[string]bool{}
	for _, n := range external {
		if a.Find(n) == nil {
			return nil, fmt.Errorf("ociarchive: no member %q to leave out", n)
		}
		ext[n] = true
	}
	l := &Layout{End: a.size - a.EndOff}
	inline := int64(0)
	for i := range a.Members {
		m := &a.Members[i]
		lm := LayoutMember{Header: make([]byte, m.HeaderLen()), Size: m.Size, External: ext[m.Name]}
		if err := readAt(a.r, lm.Header, m.HeaderOff, a.size, "header of "+m.Name); err != nil {
			return nil, err
		}
		if !lm.External && m.Size > 0 {
			if inline += m.Size; inline > maxInline {
				return nil, fmt.Errorf("%w: more than %d bytes of member data outside the external members (member %q)", ErrUnsupported, maxInline, m.Name)
			}
			var err error
			if lm.Data, err = a.readSmall(m, maxInline); err != nil {
				return nil, err
			}
		}
		l.Members = append(l.Members, lm)
	}
	return l, nil
}

// Size is the size of the archive the layout describes.
func (l *Layout) Size() int64 {
	n := l.End
	for _, m := range l.Members {
		n += int64(len(m.Header)) + padded(m.Size)
	}
	return n
}

// External lists the indexes of the external members, in order.
func (l *Layout) External() []int {
	var ix []int
	for i, m := range l.Members {
		if m.External {
			ix = append(ix, i)
		}
	}
	return ix
}

// Validate checks that the layout's records parse as the tar they claim:
// headers whose sizes match, inline data of the right size, zeros at the end.
func (l *Layout) Validate() error {
	if l.End < block {
		return fmt.Errorf("%w: layout ends with %d zero bytes, want at least an end-of-archive block", ErrFormat, l.End)
	}
	for i, m := range l.Members {
		if !m.External && int64(len(m.Data)) != m.Size {
			return fmt.Errorf("%w: layout member %d: %d bytes of data, its size is %d", ErrFormat, i, len(m.Data), m.Size)
		}
		if m.External && len(m.Data) != 0 {
			return fmt.Errorf("%w: layout member %d is external but carries data", ErrFormat, i)
		}
		if len(m.Header) == 0 || len(m.Header)%block != 0 || len(m.Header) > 2*maxRecord {
			return fmt.Errorf("%w: layout member %d: header of %d bytes", ErrFormat, i, len(m.Header))
		}
	}
	a, err := Open(layoutReader{l}, l.Size())
	if err != nil {
		return err
	}
	if len(a.Members) != len(l.Members) {
		return fmt.Errorf("%w: layout's headers describe %d members, it lists %d", ErrFormat, len(a.Members), len(l.Members))
	}
	for i, m := range a.Members {
		if m.Size != l.Members[i].Size || m.HeaderLen() != int64(len(l.Members[i].Header)) {
			return fmt.Errorf("%w: layout member %d (%q): its header says %d bytes of data after %d of headers, the layout %d after %d", ErrFormat, i, m.Name, m.Size, m.HeaderLen(), l.Members[i].Size, len(l.Members[i].Header))
		}
	}
	return nil
}

// layoutReader reads the archive a layout describes, external data as zeros.
type layoutReader struct{ l *Layout }

func (r layoutReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	pos := int64(0)
	end := off + int64(len(p))
	put := func(b []byte, at int64) {
		if at < end && at+int64(len(b)) > off {
			lo := max(off, at)
			copy(p[lo-off:], b[lo-at:])
		}
	}
	for _, m := range r.l.Members {
		if pos >= end {
			break
		}
		put(m.Header, pos)
		pos += int64(len(m.Header))
		if !m.External {
			put(m.Data, pos)
		}
		pos += padded(m.Size)
	}
	if size := r.l.Size(); end > size {
		return int(max(0, size-off)), io.EOF
	}
	return len(p), nil
}

func writeZeros(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Write writes the archive the layout describes, taking the data of its
// external members, in order, from external (each must hold exactly the
// member's size).
func Write(w io.Writer, l *Layout, external ...io.Reader) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if ix := l.External(); len(ix) != len(external) {
		return fmt.Errorf("ociarchive: the layout has %d external members, %d readers were given", len(ix), len(external))
	}
	e := 0
	for i, m := range l.Members {
		if _, err := w.Write(m.Header); err != nil {
			return err
		}
		if m.External {
			src := external[e]
			e++
			n, err := io.Copy(w, io.LimitReader(src, m.Size))
			if err != nil {
				return fmt.Errorf("ociarchive: external member %d: %w", i, err)
			}
			if n != m.Size {
				return fmt.Errorf("ociarchive: external member %d ends at %d bytes, the archive holds %d: %w", i, n, m.Size, io.ErrUnexpectedEOF)
			}
			var one [1]byte
			if k, _ := io.ReadFull(src, one[:]); k > 0 {
				return fmt.Errorf("ociarchive: external member %d is longer than the archive's %d bytes", i, m.Size)
			}
		} else if _, err := w.Write(m.Data); err != nil {
			return err
		}
		if err := writeZeros(w, padded(m.Size)-m.Size); err != nil {
			return err
		}
	}
	return writeZeros(w, l.End)
}

// Descriptor is an OCI content descriptor.
type Descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// BlobName is the member name of a blob in an OCI layout.
func BlobName(digest string) (string, error) {
	alg, hex, ok := strings.Cut(digest, ":")
	if !ok || alg != "sha256" || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: digest %q is not sha256:<64 hex digits>", ErrUnsupported, digest)
	}
	return "blobs/sha256/" + hex, nil
}

// Layers follows index.json to every image manifest (through nested
// indexes) and returns the member names of their layer blobs, in order,
// each once.
func (a *Archive) Layers() ([]string, error) {
	idx := a.Find("index.json")
	if idx == nil {
		return nil, fmt.Errorf("%w: no index.json: not an OCI image layout", ErrUnsupported)
	}
	var out []string
	seen := map[string]bool{}
	var walk func(m *Member, depth int) error
	walk = func(m *Member, depth int) error {
		if depth > 4 {
			return fmt.Errorf("%w: indexes nested more than 4 deep at %q", ErrUnsupported, m.Name)
		}
		b, err := a.readSmall(m, 4<<20)
		if err != nil {
			return err
		}
		var doc struct {
			Manifests []Descriptor `json:"manifests"`
			Layers    []Descriptor `json:"layers"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrFormat, m.Name, err)
		}
		for _, d := range doc.Layers {
			n, err := BlobName(d.Digest)
			if err != nil {
				return err
			}
			lm := a.Find(n)
			if lm == nil || lm.Size != d.Size {
				return fmt.Errorf("%w: %s names layer %s of %d bytes, the archive has no such member", ErrFormat, m.Name, d.Digest, d.Size)
			}
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
		for _, d := range doc.Manifests {
			n, err := BlobName(d.Digest)
			if err != nil {
				return err
			}
			mm := a.Find(n)
			if mm == nil {
				return fmt.Errorf("%w: %s names manifest %s, the archive has no such member", ErrFormat, m.Name, d.Digest)
			}
			if err := walk(mm, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(idx, 0)
}

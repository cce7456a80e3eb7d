package reflate

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/adler32"
	"hash/crc32"
	"io"
)

// Wrapped streams: a whole gzip file (RFC 1952: one or more members, each a header, a raw
// deflate stream and a CRC-32/ISIZE trailer) or one zlib stream (RFC 1950: a 2-byte header,
// the deflate stream, an Adler-32 trailer), split into the plain data and one reconstruction
// blob. Headers are kept verbatim (FEXTRA, FNAME, FCOMMENT, FHCRC as written); trailers are
// checked when splitting and computed again from the plain data when rebuilding.
//
// Reconstruction data of a wrapped stream, version 1:
//
//	"RFW" 1          magic and version
//	kind             1 byte: 1 gzip file, 2 zlib stream
//	then records:    'M', the header's length and bytes, the member's deflate reconstruction
//	                 data's length and bytes (see the package doc); for gzip, once after the
//	                 members, 'T' and the trailing bytes' length and bytes; then 'E', the
//	                 whole file's length and CRC-32 (4 bytes LE), checked at its end
const (
	wrapMagic   = "RFW"
	wrapVersion = 1
	kindGzip    = 1
	kindZlib    = 2

	// maxTrailing bounds the bytes after a gzip file's last member that are kept verbatim.
	maxTrailing = 1 << 20
	// maxGzipHeader bounds a gzip member header (FEXTRA is at most 64 KiB, FNAME and FCOMMENT
	// are zero-terminated strings).
	maxGzipHeader = 1 << 20
)

// ErrNotGzip is wrapped by errors about input that is not a gzip file or zlib stream.
var ErrNotGzip = errors.New("reflate: not a gzip file")

// SplitGzip reads a whole gzip file from r to its end, writes the plain data of all its
// members to plain and returns the reconstruction data and the number of bytes read. Bytes
// after the last member that do not begin another member (padding, "trailing garbage" to
// gzip -d) are kept verbatim in the reconstruction data, up to 1 MiB; more is an error.
// A member's CRC-32 or ISIZE that does not match its data is an error.
func SplitGzip(r io.Reader, plain io.Writer) (recon []byte, n int64, err error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = bufio.NewReader(r)
	}
	cr := &countReader{r: br}
	recon = append([]byte(wrapMagic), wrapVersion, kindGzip)
	for member := 0; ; member++ {
		hdr, err := readGzipHeader(cr)
		if err != nil {
			var ne *notMember
			if member == 0 && errors.As(err, &ne) {
				return nil, 0, fmt.Errorf("%w: no gzip magic", ErrNotGzip)
			}
			if member == 0 {
				return nil, 0, err
			}
			if !errors.As(err, &ne) {
				return nil, 0, fmt.Errorf("gzip member %d: %w", member, err)
			}
			// Not another member: what is left is kept as it is.
			rest, err := io.ReadAll(io.LimitReader(readerOf(cr), maxTrailing+1))
			if err != nil {
				return nil, 0, err
			}
			rest = append(ne.read, rest...)
			if len(rest) > maxTrailing {
				return nil, 0, fmt.Errorf("reflate: gzip file: more than %d bytes after member %d that are not a gzip member", maxTrailing, member)
			}
			if len(rest) > 0 {
				recon = append(recon, 'T')
				recon = binary.AppendUvarint(recon, uint64(len(rest)))
				recon = append(recon, rest...)
			}
			break
		}
		crc := crc32.NewIEEE()
		cw := &countWriter{w: io.MultiWriter(plain, crc)}
		rec, _, err := SplitStream(cr, cw)
		if err != nil {
			return nil, 0, fmt.Errorf("gzip member %d: %w", member, err)
		}
		var tr [8]byte
		if err := readFullBytes(cr, tr[:]); err != nil {
			return nil, 0, fmt.Errorf("reflate: gzip member %d: trailer: %w", member, err)
		}
		if binary.LittleEndian.Uint32(tr[:4]) != crc.Sum32() || binary.LittleEndian.Uint32(tr[4:]) != uint32(cw.n) {
			return nil, 0, fmt.Errorf("reflate: gzip member %d: the trailer's CRC-32 or size does not match the data (damaged file)", member)
		}
		recon = appendMember(recon, hdr, rec)
	}
	return appendEnd(recon, cr), cr.n, nil
}

// appendEnd appends the end record: the length and CRC-32 of everything read.
func appendEnd(b []byte, cr *countReader) []byte {
	b = append(b, 'E')
	b = binary.AppendUvarint(b, uint64(cr.n))
	return binary.LittleEndian.AppendUint32(b, cr.sum())
}

// SplitZlib reads one zlib stream from r (not past its end when r is an io.ByteReader, as
// SplitStream), writes its plain data to plain and returns the reconstruction data and the
// number of bytes the stream takes. Streams with a preset dictionary are refused.
func SplitZlib(r io.Reader, plain io.Writer) (recon []byte, n int64, err error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = bufio.NewReader(r)
	}
	cr := &countReader{r: br}
	var hdr [2]byte
	if err := readFullBytes(cr, hdr[:]); err != nil {
		return nil, 0, fmt.Errorf("%w: zlib header: %v", ErrNotGzip, err)
	}
	if hdr[0]&15 != 8 || hdr[0]>>4 > 7 || binary.BigEndian.Uint16(hdr[:])%31 != 0 {
		return nil, 0, fmt.Errorf("%w: no zlib header", ErrNotGzip)
	}
	if hdr[1]&0x20 != 0 {
		return nil, 0, fmt.Errorf("reflate: zlib stream with a preset dictionary: %w", errors.ErrUnsupported)
	}
	a := adler32.New()
	rec, _, err := SplitStream(cr, io.MultiWriter(plain, a))
	if err != nil {
		return nil, 0, fmt.Errorf("zlib stream: %w", err)
	}
	var tr [4]byte
	if err := readFullBytes(cr, tr[:]); err != nil {
		return nil, 0, fmt.Errorf("reflate: zlib trailer: %w", err)
	}
	if binary.BigEndian.Uint32(tr[:]) != a.Sum32() {
		return nil, 0, errors.New("reflate: zlib stream: the trailer's Adler-32 does not match the data (damaged stream)")
	}
	recon = append([]byte(wrapMagic), wrapVersion, kindZlib)
	recon = appendMember(recon, hdr[:], rec)
	return appendEnd(recon, cr), cr.n, nil
}

// RebuildGzip writes the gzip file or zlib stream described by recon (from SplitGzip or
// SplitZlib) to w, reading exactly its plain data from plain.
func RebuildGzip(w io.Writer, plain io.Reader, recon []byte) error {
	if !bytes.HasPrefix(recon, []byte(wrapMagic)) || len(recon) < len(wrapMagic)+2 {
		return fmt.Errorf("%w: no %q magic", ErrCorrupt, wrapMagic)
	}
	if v := recon[len(wrapMagic)]; v != wrapVersion {
		return fmt.Errorf("%w: wrapper version %d, want %d", ErrCorrupt, v, wrapVersion)
	}
	kind := recon[len(wrapMagic)+1]
	if kind != kindGzip && kind != kindZlib {
		return fmt.Errorf("%w: wrapper kind %d", ErrCorrupt, kind)
	}
	r := &recReader{r: bytes.NewReader(recon[len(wrapMagic)+2:])}
	cw := &checkWriter{w: w, crc: crc32.NewIEEE()}
	w = cw
	for member := 0; ; member++ {
		switch tag := r.byte(); {
		case r.err != nil:
			return fmt.Errorf("%w: wrapper records", ErrCorrupt)
		case tag == 'E':
			n, sum := r.uvarint(1<<62), r.u32()
			if r.err != nil || member == 0 {
				return fmt.Errorf("%w: end record", ErrCorrupt)
			}
			if uint64(cw.n) != n || cw.crc.Sum32() != sum {
				return errors.New("reflate: rebuilt file does not match its recorded length and CRC-32 (damaged plain or reconstruction data)")
			}
			return nil
		case tag == 'T' && kind == kindGzip:
			b := r.bytes(r.uvarint(maxTrailing))
			if r.err != nil {
				return fmt.Errorf("%w: trailing bytes", ErrCorrupt)
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
		case tag == 'M' && (kind == kindGzip || member == 0):
			hdr := r.bytes(r.uvarint(maxGzipHeader))
			rec := r.bytes(r.uvarint(1 << 40))
			if r.err != nil {
				return fmt.Errorf("%w: member %d", ErrCorrupt, member)
			}
			if _, err := w.Write(hdr); err != nil {
				return err
			}
			var sum hash.Hash32 = crc32.NewIEEE()
			if kind == kindZlib {
				sum = adler32.New()
			}
			hr := &hashReader{r: plain, h: sum}
			if err := RebuildStream(w, hr, rec); err != nil {
				return fmt.Errorf("member %d: %w", member, err)
			}
			var tr []byte
			if kind == kindZlib {
				tr = binary.BigEndian.AppendUint32(nil, sum.Sum32())
			} else {
				tr = binary.LittleEndian.AppendUint32(nil, sum.Sum32())
				tr = binary.LittleEndian.AppendUint32(tr, uint32(hr.n))
			}
			if _, err := w.Write(tr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: wrapper record %q", ErrCorrupt, tag)
		}
	}
}

func appendMember(b, hdr, rec []byte) []byte {
	b = append(b, 'M')
	b = binary.AppendUvarint(b, uint64(len(hdr)))
	b = append(b, hdr...)
	b = binary.AppendUvarint(b, uint64(len(rec)))
	return append(b, rec...)
}

func (r *recReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if br, ok := r.r.(*bytes.Reader); ok && uint64(br.Len()) < n {
		r.err = ErrCorrupt
		return nil
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = r.byte()
	}
	return b
}

// notMember is the error for bytes after a member that do not begin another one.
type notMember struct{ read []byte }

func (e *notMember) Error() string { return "not a gzip member" }

// readGzipHeader reads a gzip member header and returns it as written.
func readGzipHeader(r *countReader) ([]byte, error) {
	var h []byte
	next := func() (byte, error) {
		c, err := r.ReadByte()
		if err == nil {
			h = append(h, c)
		} else if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return c, err
	}
	for i := 0; i < 2; i++ {
		c, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && r.n > 0 {
				return nil, &notMember{read: h}
			}
			return nil, fmt.Errorf("%w: %v", ErrNotGzip, err)
		}
		h = append(h, c)
		if c != "\x1f\x8b"[i] {
			if r.n > 1 {
				return nil, &notMember{read: h}
			}
			return nil, fmt.Errorf("%w: no gzip magic", ErrNotGzip)
		}
	}
	for i := 0; i < 8; i++ {
		if _, err := next(); err != nil {
			return nil, fmt.Errorf("reflate: gzip header: %w", err)
		}
	}
	if h[2] != 8 {
		return nil, fmt.Errorf("reflate: gzip compression method %d: %w", h[2], errors.ErrUnsupported)
	}
	flg := h[3]
	if flg&0xe0 != 0 {
		return nil, fmt.Errorf("%w: reserved gzip header flags %#x", ErrNotGzip, flg)
	}
	if flg&4 != 0 { // FEXTRA
		a, err := next()
		if err != nil {
			return nil, fmt.Errorf("reflate: gzip header: %w", err)
		}
		b, err := next()
		if err != nil {
			return nil, fmt.Errorf("reflate: gzip header: %w", err)
		}
		for i := 0; i < int(a)|int(b)<<8; i++ {
			if _, err := next(); err != nil {
				return nil, fmt.Errorf("reflate: gzip header: %w", err)
			}
		}
	}
	for _, f := range []byte{8, 16} { // FNAME, FCOMMENT
		if flg&f == 0 {
			continue
		}
		for {
			c, err := next()
			if err != nil {
				return nil, fmt.Errorf("reflate: gzip header: %w", err)
			}
			if c == 0 {
				break
			}
			if len(h) > maxGzipHeader-8 {
				return nil, fmt.Errorf("reflate: gzip header longer than %d bytes", maxGzipHeader)
			}
		}
	}
	if flg&2 != 0 { // FHCRC
		for i := 0; i < 2; i++ {
			if _, err := next(); err != nil {
				return nil, fmt.Errorf("reflate: gzip header: %w", err)
			}
		}
	}
	return h, nil
}

// countReader counts the bytes read through it and keeps their CRC-32 (batched: most bytes
// come one at a time through ReadByte).
type countReader struct {
	r   io.ByteReader
	n   int64
	crc uint32
	buf []byte
}

func (c *countReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
		if c.buf = append(c.buf, b); len(c.buf) >= 4096 {
			c.flush()
		}
	}
	return b, err
}

func (c *countReader) flush() {
	c.crc = crc32.Update(c.crc, crc32.IEEETable, c.buf)
	c.buf = c.buf[:0]
}

func (c *countReader) sum() uint32 {
	c.flush()
	return c.crc
}

func (c *countReader) Read(p []byte) (int, error) {
	if rd, ok := c.r.(io.Reader); ok {
		c.flush()
		n, err := rd.Read(p)
		c.n += int64(n)
		c.crc = crc32.Update(c.crc, crc32.IEEETable, p[:n])
		return n, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	b, err := c.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	return 1, nil
}

func readerOf(c *countReader) io.Reader { return c }

func readFullBytes(r io.ByteReader, b []byte) error {
	for i := range b {
		c, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		b[i] = c
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type hashReader struct {
	r io.Reader
	h hash.Hash32
	n int64
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// WrappedSize returns the length of the gzip file or zlib stream that recon (made by SplitGzip
// or SplitZlib) rebuilds, read from its end record, so that a caller can announce the size
// before rebuilding.
func WrappedSize(recon []byte) (int64, error) {
	if !bytes.HasPrefix(recon, []byte(wrapMagic)) || len(recon) < len(wrapMagic)+2 || recon[len(wrapMagic)] != wrapVersion {
		return 0, fmt.Errorf("%w: no %q version %d header", ErrCorrupt, wrapMagic, wrapVersion)
	}
	r := &recReader{r: bytes.NewReader(recon[len(wrapMagic)+2:])}
	for {
		switch tag := r.byte(); {
		case r.err != nil:
			return 0, fmt.Errorf("%w: wrapper records", ErrCorrupt)
		case tag == 'E':
			n := r.uvarint(1 << 62)
			if r.err != nil {
				return 0, fmt.Errorf("%w: end record", ErrCorrupt)
			}
			return int64(n), nil
		case tag == 'T':
			r.skip(r.uvarint(maxTrailing))
		case tag == 'M':
			r.skip(r.uvarint(maxGzipHeader))
			r.skip(r.uvarint(1 << 40))
		default:
			return 0, fmt.Errorf("%w: wrapper record %q", ErrCorrupt, tag)
		}
	}
}

// skip passes over n bytes of a bytes.Reader-backed record stream.
func (r *recReader) skip(n uint64) {
	if r.err != nil {
		return
	}
	br, ok := r.r.(*bytes.Reader)
	if !ok || uint64(br.Len()) < n {
		r.err = ErrCorrupt
		return
	}
	br.Seek(int64(n), io.SeekCurrent)
}

package rehydrate

// The gzip file layer of the gzip op: a whole .gz file (any number of members, each header and
// trailer verbatim, and any bytes after the last member) split into its plain data and one
// reconstruction blob, and written again from the two. Kept apart in this file so that it can
// be swapped for reflate's own gzip layer; only GzipSplit and GzipRebuild are used elsewhere.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/rehydrator/rehydrator/reflate"
)

// ErrNotGzip marks input that does not start with a gzip member.
var ErrNotGzip = errors.New("gzip: not a gzip file")

const (
	gzMagic    = "RGZ\x01" // reconstruction blob of a gzip file, version 1
	maxGzHead  = 1 << 20   // a member header (name, comment, extra field) longer than this is refused
	maxGzTail  = 1 << 20   // bytes after the last member kept verbatim
	gzTrailLen = 8
)

// gzipHeader reads one member header (RFC 1952) from br, returning its bytes; io.EOF when br
// is at its end before the first byte.
func gzipHeader(br *bufio.Reader) ([]byte, error) {
	fixed := make([]byte, 10)
	if n, err := io.ReadFull(br, fixed); err != nil {
		if n == 0 && err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%w: header cut short", ErrNotGzip)
	}
	if fixed[0] != 0x1f || fixed[1] != 0x8b || fixed[2] != 8 || fixed[3]&0xe0 != 0 {
		return nil, fmt.Errorf("%w: bad magic, method or flags % x", ErrNotGzip, fixed[:4])
	}
	h := fixed
	flg := fixed[3]
	take := func(n int) error {
		if len(h)+n > maxGzHead {
			return fmt.Errorf("%w: header longer than %d bytes", ErrNotGzip, maxGzHead)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return fmt.Errorf("%w: header cut short", ErrNotGzip)
		}
		h = append(h, b...)
		return nil
	}
	zstring := func() error {
		for {
			c, err := br.ReadByte()
			if err != nil {
				return fmt.Errorf("%w: header cut short", ErrNotGzip)
			}
			if h = append(h, c); len(h) > maxGzHead {
				return fmt.Errorf("%w: header longer than %d bytes", ErrNotGzip, maxGzHead)
			}
			if c == 0 {
				return nil
			}
		}
	}
	if flg&0x04 != 0 { // FEXTRA
		if err := take(2); err != nil {
			return nil, err
		}
		if err := take(int(binary.LittleEndian.Uint16(h[len(h)-2:]))); err != nil {
			return nil, err
		}
	}
	for _, bit := range []byte{0x08, 0x10} { // FNAME, FCOMMENT
		if flg&bit != 0 {
			if err := zstring(); err != nil {
				return nil, err
			}
		}
	}
	if flg&0x02 != 0 { // FHCRC
		if err := take(2); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// countWriter counts what passes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// GzipSplit reads a whole gzip file from r, writes the plain data of its members to plain and
// returns the reconstruction blob GzipRebuild needs, and the plain size.
//
// Blob: "RGZ" 1, the member count, then per member its header (length, bytes), plain length,
// deflate stream length, reflate reconstruction data (length, bytes) and 8-byte trailer, then the bytes that follow
// the last member (length, bytes), and the CRC-32 of all that (4 bytes, little-endian): the
// headers and trailers are written as they are, so the checksum is what keeps a damaged blob
// from writing a wrong file. Integers are unsigned varints.
func GzipSplit(r io.Reader, plain io.Writer) ([]byte, int64, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	cw := &countWriter{w: plain}
	var members [][]byte
	for {
		if len(members) > 0 {
			// Another member follows only where gzip's magic does; anything else is kept as
			// the file's tail (gzip itself ignores trailing zeros).
			if p, _ := br.Peek(2); len(p) < 2 || p[0] != 0x1f || p[1] != 0x8b {
				break
			}
		}
		h, err := gzipHeader(br)
		if err == io.EOF && len(members) == 0 {
			return nil, 0, fmt.Errorf("%w: empty file", ErrNotGzip)
		}
		if err != nil {
			return nil, 0, err
		}
		before := cw.n
		rc, clen, err := reflate.SplitStream(br, cw)
		if err != nil {
			return nil, 0, fmt.Errorf("gzip member %d: %w", len(members), err)
		}
		trail := make([]byte, gzTrailLen)
		if _, err := io.ReadFull(br, trail); err != nil {
			return nil, 0, fmt.Errorf("gzip member %d: trailer cut short", len(members))
		}
		if got, want := binary.LittleEndian.Uint32(trail[4:]), uint32(cw.n-before); got != want {
			return nil, 0, fmt.Errorf("gzip member %d: trailer says %d bytes (mod 2^32), the member holds %d", len(members), got, want)
		}
		m := binary.AppendUvarint(nil, uint64(len(h)))
		m = append(m, h...)
		m = binary.AppendUvarint(m, uint64(cw.n-before))
		m = binary.AppendUvarint(m, uint64(clen))
		m = binary.AppendUvarint(m, uint64(len(rc)))
		m = append(m, rc...)
		members = append(members, append(m, trail...))
	}
	tail, err := io.ReadAll(io.LimitReader(br, maxGzTail+1))
	if err != nil {
		return nil, 0, err
	}
	if len(tail) > maxGzTail {
		return nil, 0, fmt.Errorf("gzip: more than %d bytes after the last member", maxGzTail)
	}
	out := binary.AppendUvarint([]byte(gzMagic), uint64(len(members)))
	for _, m := range members {
		out = append(out, m...)
	}
	out = binary.AppendUvarint(out, uint64(len(tail)))
	out = append(out, tail...)
	return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out)), cw.n, nil
}

// gzMember is one member of a parsed reconstruction blob.
type gzMember struct {
	header, recon, trailer []byte
	plain, stream          int64
}

// gzipBlob is a parsed reconstruction blob.
type gzipBlob struct {
	members []gzMember
	tail    []byte
}

// size is the size of the gzip file the blob rebuilds.
func (g *gzipBlob) size() int64 {
	n := int64(len(g.tail))
	for _, m := range g.members {
		n += int64(len(m.header)) + m.stream + gzTrailLen
	}
	return n
}

func parseGzipBlob(b []byte) (*gzipBlob, error) {
	bad := func(what string) error {
		return fmt.Errorf("gzip reconstruction blob: %s (the blob is damaged: rebuild the image)", what)
	}
	if !bytes.HasPrefix(b, []byte(gzMagic)) || len(b) < len(gzMagic)+4 {
		return nil, bad("no RGZ1 magic")
	}
	sum := binary.LittleEndian.Uint32(b[len(b)-4:])
	if b = b[:len(b)-4]; crc32.ChecksumIEEE(b) != sum {
		return nil, bad("checksum mismatch")
	}
	b = b[len(gzMagic):]
	uv := func(limit uint64) (uint64, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 || v > limit {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	bytesOf := func(limit uint64) ([]byte, bool) {
		n, ok := uv(limit)
		if !ok || n > uint64(len(b)) {
			return nil, false
		}
		out := b[:n]
		b = b[n:]
		return out, true
	}
	count, ok := uv(uint64(len(b)))
	if !ok {
		return nil, bad("member count")
	}
	g := &gzipBlob{members: make([]gzMember, 0, min(count, 1024))}
	for i := uint64(0); i < count; i++ {
		var m gzMember
		var ok1, ok2, ok3, ok4 bool
		m.header, ok1 = bytesOf(maxGzHead)
		p, ok2 := uv(1 << 62)
		c, ok3 := uv(1 << 62)
		m.plain, m.stream = int64(p), int64(c)
		m.recon, ok4 = bytesOf(uint64(len(b)))
		if !ok1 || !ok2 || !ok3 || !ok4 || len(m.header) < 10 || len(b) < gzTrailLen {
			return nil, bad(fmt.Sprintf("member %d", i))
		}
		m.trailer, b = b[:gzTrailLen], b[gzTrailLen:]
		g.members = append(g.members, m)
	}
	tail, ok := bytesOf(maxGzTail)
	if !ok || len(b) != 0 {
		return nil, bad("tail")
	}
	g.tail = tail
	return g, nil
}

// GzipRebuild writes the gzip file that the reconstruction blob and the plain data read from
// plain make. Every member's deflate stream is checked against the length and CRC-32 its
// reconstruction data records.
func GzipRebuild(w io.Writer, plain io.Reader, blob []byte) error {
	g, err := parseGzipBlob(blob)
	if err != nil {
		return err
	}
	return g.rebuild(w, plain)
}

func (g *gzipBlob) rebuild(w io.Writer, plain io.Reader) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	for i, m := range g.members {
		if _, err := bw.Write(m.header); err != nil {
			return err
		}
		lr := &io.LimitedReader{R: plain, N: m.plain}
		if err := reflate.RebuildStream(bw, lr, m.recon); err != nil {
			return fmt.Errorf("gzip member %d: %w", i, err)
		}
		if lr.N != 0 {
			return fmt.Errorf("gzip member %d: plain data ends %d bytes short", i, lr.N)
		}
		if _, err := bw.Write(m.trailer); err != nil {
			return err
		}
	}
	if _, err := bw.Write(g.tail); err != nil {
		return err
	}
	var one [1]byte
	if n, _ := io.ReadFull(plain, one[:]); n > 0 {
		return errors.New("gzip: plain data is longer than the members hold")
	}
	return bw.Flush()
}

package vhdx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Layout describes a VHDX closely enough to write it again byte for byte from
// its guest view: the file's size and every non-zero byte outside the payload
// blocks, verbatim. The headers, region tables, metadata and BAT inside
// Chunks say where each payload block goes.
type Layout struct {
	FileSize int64   `json:"fileSize"`
	Chunks   []Chunk `json:"chunks"`
}

// Chunk is a run of file bytes at Off.
type Chunk struct {
	Off  int64  `json:"off"`
	Data []byte `json:"data"`
}

// ErrOrder means Write was given a layout whose payload blocks are not in
// guest order in the file; WriteFrom handles any order.
var ErrOrder = errors.New("vhdx: payload blocks are not in guest order (write with WriteFrom and an io.ReaderAt)")

// chunkGap is how many zero bytes may sit inside one chunk: fewer, larger
// chunks cost less in a recipe than many small ones.
const chunkGap = 512

// maxLayoutBytes bounds the bytes kept outside payload blocks: qemu's files
// keep 4 MiB there; a file with more is not worth describing this way.
const maxLayoutBytes = 256 * mib

// span is a payload block's bytes in the file.
type span struct {
	off, n int64
	block  Block
}

// spans lists the payload blocks' bytes in file order and checks that they
// do not overlap each other or the header section.
func (img *Image) spans() ([]span, error) {
	var ss []span
	for _, b := range img.Blocks {
		if b.State != BlockFullyPresent {
			continue
		}
		n := min(img.guestLen(b.Index), img.fileSize-b.FileOff)
		ss = append(ss, span{off: b.FileOff, n: n, block: b})
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].off < ss[j].off })
	for i, s := range ss {
		if i > 0 && ss[i-1].off+ss[i-1].n > s.off {
			return nil, fmt.Errorf("%w: blocks %d and %d overlap at file offset %#x", ErrCorrupt, ss[i-1].block.Index, s.block.Index, s.off)
		}
		for _, rg := range img.Regions {
			if s.off < rg.Offset+rg.Length && rg.Offset < s.off+s.n {
				return nil, fmt.Errorf("%w: block %d at file offset %#x overlaps region %v", ErrCorrupt, s.block.Index, s.off, rg.GUID)
			}
		}
	}
	return ss, nil
}

// Layout reads every byte outside the payload blocks and keeps the non-zero
// runs.
func (img *Image) Layout() (*Layout, error) {
	ss, err := img.spans()
	if err != nil {
		return nil, err
	}
	l := &Layout{FileSize: img.fileSize}
	var kept int64
	buf := make([]byte, 1*mib)
	scan := func(from, to int64) error {
		for off := from; off < to; {
			n := min(int64(len(buf)), to-off)
			if err := readAt(img.r, buf[:n], off, img.fileSize, "metadata bytes"); err != nil {
				return err
			}
			for i := int64(0); i < n; {
				if buf[i] == 0 {
					i++
					continue
				}
				j := i + 1
				for zeros := 0; j < n; j++ {
					if buf[j] != 0 {
						zeros = 0
					} else if zeros++; zeros > chunkGap {
						break
					}
				}
				run := bytes.TrimRight(buf[i:j], "\x00")
				at := off + i
				if k := len(l.Chunks) - 1; k >= 0 && l.Chunks[k].Off+int64(len(l.Chunks[k].Data)) == at {
					l.Chunks[k].Data = append(l.Chunks[k].Data, run...)
				} else {
					l.Chunks = append(l.Chunks, Chunk{Off: at, Data: append([]byte(nil), run...)})
				}
				if kept += int64(len(run)); kept > maxLayoutBytes {
					return fmt.Errorf("%w: more than %d non-zero bytes outside the payload blocks", ErrUnsupported, maxLayoutBytes)
				}
				i += int64(len(run))
			}
			off += n
		}
		return nil
	}
	pos := int64(0)
	for _, s := range ss {
		if err := scan(pos, s.off); err != nil {
			return nil, err
		}
		pos = s.off + s.n
	}
	if err := scan(pos, img.fileSize); err != nil {
		return nil, err
	}
	return l, nil
}

// chunkReader reads a Layout's file with the payload blocks as zeros.
type chunkReader struct{ l *Layout }

func (c chunkReader) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	cs := c.l.Chunks
	i := sort.Search(len(cs), func(i int) bool { return cs[i].Off+int64(len(cs[i].Data)) > off })
	for ; i < len(cs) && cs[i].Off < off+int64(len(p)); i++ {
		ch := cs[i]
		if ch.Off >= off {
			copy(p[ch.Off-off:], ch.Data)
		} else {
			copy(p, ch.Data[off-ch.Off:])
		}
	}
	if end := c.l.FileSize - off; end < int64(len(p)) {
		return int(max(0, end)), io.EOF
	}
	return len(p), nil
}

// Validate checks that the layout can be written: chunks in order inside the
// file, structures that parse, payload blocks that overlap no chunk.
func (l *Layout) Validate() error {
	_, _, err := l.plan()
	return err
}

// Image parses the layout's structures (its guest view reads the payload
// blocks as zeros): block size, virtual size, which blocks are present.
func (l *Layout) Image() (*Image, error) {
	img, _, err := l.plan()
	return img, err
}

func (l *Layout) plan() (*Image, []span, error) {
	var end int64
	for i, c := range l.Chunks {
		if len(c.Data) == 0 || c.Off < end || c.Off+int64(len(c.Data)) > l.FileSize {
			return nil, nil, fmt.Errorf("%w: layout chunk %d at offset %#x (%d bytes) is empty, out of order or past the %d-byte file", ErrCorrupt, i, c.Off, len(c.Data), l.FileSize)
		}
		end = c.Off + int64(len(c.Data))
	}
	img, err := Open(chunkReader{l}, l.FileSize)
	if err != nil {
		return nil, nil, err
	}
	ss, err := img.spans()
	if err != nil {
		return nil, nil, err
	}
	cs := l.Chunks
	for _, s := range ss {
		i := sort.Search(len(cs), func(i int) bool { return cs[i].Off+int64(len(cs[i].Data)) > s.off })
		if i < len(cs) && cs[i].Off < s.off+s.n {
			return nil, nil, fmt.Errorf("%w: block %d at file offset %#x overlaps layout chunk at %#x", ErrCorrupt, s.block.Index, s.off, cs[i].Off)
		}
	}
	return img, ss, nil
}

// VirtualSize is the size of the guest view the layout expects.
func (l *Layout) VirtualSize() (int64, error) {
	img, err := l.Image()
	if err != nil {
		return 0, err
	}
	return img.VirtualSize, nil
}

// InOrder reports whether the payload blocks lie in the file in guest order,
// so that Write can stream the guest (qemu-img convert writes them so).
func (l *Layout) InOrder() bool {
	_, ss, err := l.plan()
	if err != nil {
		return false
	}
	for i := 1; i < len(ss); i++ {
		if ss[i].block.Index < ss[i-1].block.Index {
			return false
		}
	}
	return true
}

var zeros = make([]byte, 64<<10)

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

// emit writes the file: zeros, chunks, and each span's bytes from block.
func (l *Layout) emit(w io.Writer, ss []span, block func(s span) error) error {
	pos := int64(0)
	ci := 0
	flushChunks := func(upto int64) error {
		for ; ci < len(l.Chunks) && l.Chunks[ci].Off < upto; ci++ {
			c := l.Chunks[ci]
			if err := writeZeros(w, c.Off-pos); err != nil {
				return err
			}
			if _, err := w.Write(c.Data); err != nil {
				return err
			}
			pos = c.Off + int64(len(c.Data))
		}
		return nil
	}
	for _, s := range ss {
		if err := flushChunks(s.off); err != nil {
			return err
		}
		if err := writeZeros(w, s.off-pos); err != nil {
			return err
		}
		if err := block(s); err != nil {
			return err
		}
		pos = s.off + s.n
	}
	if err := flushChunks(l.FileSize); err != nil {
		return err
	}
	return writeZeros(w, l.FileSize-pos)
}

// Write writes the VHDX the layout describes, reading the guest view as a
// stream of exactly VirtualSize bytes. Guest bytes that no payload block
// holds must be zero (else the image would lose them): they are checked.
// The payload blocks must lie in guest order (InOrder); otherwise Write
// fails with ErrOrder.
func Write(w io.Writer, guest io.Reader, l *Layout) error {
	img, ss, err := l.plan()
	if err != nil {
		return err
	}
	gpos := int64(0)
	skipZeros := func(to int64) error {
		buf := make([]byte, len(zeros))
		for gpos < to {
			n := min(int64(len(buf)), to-gpos)
			if _, err := io.ReadFull(guest, buf[:n]); err != nil {
				return fmt.Errorf("vhdx: guest at offset %#x of %#x: %w", gpos, img.VirtualSize, noEOF(err))
			}
			if !bytes.Equal(buf[:n], zeros[:n]) {
				i := bytes.IndexFunc(buf[:n], func(r rune) bool { return r != 0 })
				return fmt.Errorf("vhdx: guest offset %#x is not zero but no payload block of the layout holds it", gpos+int64(i))
			}
			gpos += n
		}
		return nil
	}
	err = l.emit(w, ss, func(s span) error {
		start := s.block.Index * img.BlockSize
		if start < gpos {
			return ErrOrder
		}
		if err := skipZeros(start); err != nil {
			return err
		}
		if n, err := io.CopyN(w, guest, s.n); err != nil {
			return fmt.Errorf("vhdx: guest at offset %#x (block %d): %w", start+n, s.block.Index, noEOF(err))
		}
		gpos += s.n
		return skipZeros(start + img.guestLen(s.block.Index))
	})
	if err != nil {
		return err
	}
	if err := skipZeros(img.VirtualSize); err != nil {
		return err
	}
	var one [1]byte
	if n, _ := io.ReadFull(guest, one[:]); n > 0 {
		return fmt.Errorf("vhdx: guest is longer than the image's virtual size %d", img.VirtualSize)
	}
	return nil
}

// WriteFrom writes the VHDX the layout describes, reading each payload block
// from the guest view at its guest offset, in whatever order the file holds
// them. Unlike Write it does not read, so does not check, the guest bytes no
// block holds.
func WriteFrom(w io.Writer, guest io.ReaderAt, l *Layout) error {
	img, ss, err := l.plan()
	if err != nil {
		return err
	}
	return l.emit(w, ss, func(s span) error {
		start := s.block.Index * img.BlockSize
		if _, err := io.Copy(w, io.NewSectionReader(guest, start, s.n)); err != nil {
			return fmt.Errorf("vhdx: guest at offset %#x (block %d): %w", start, s.block.Index, err)
		}
		return nil
	})
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Size is the size of the image file.
func (l *Layout) Size() int64 { return l.FileSize }

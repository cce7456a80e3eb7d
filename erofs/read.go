package erofs

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/ulikunitz/xz/lzma"
)

// maxDecoded bounds the bytes one extent may decode to (mkfs.erofs caps a pcluster's output
// at 12 MiB, Z_EROFS_PCLUSTER_MAX_DSIZE; a crafted index could claim more).
const maxDecoded = 16 << 20

// Open returns a file's content. It reads every layout; compressed clusters are decoded for
// LZ4, LZMA (MicroLZMA) and deflate, while zstd ones fail with ErrUnsupported when read.
func (im *Image) Open(in *Inode) (*io.SectionReader, error) {
	f, err := im.newFileReader(in)
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(f, 0, int64(in.Size)), nil
}

// readAll reads a small file (directory, symlink) whole.
func (im *Image) readAll(in *Inode) ([]byte, error) {
	r, err := im.Open(in)
	if err != nil {
		return nil, err
	}
	b := make([]byte, in.Size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

type fileReader struct {
	im  *Image
	in  *Inode
	ext []Extent

	mu    sync.Mutex
	cache []decoded // most recently used first
}

// decoded is an extent's decoded bytes. A few are kept: the packed inode serves the
// fragments of many files, which need not come in the packed inode's order.
type decoded struct {
	idx  int
	data []byte
}

const cachedExtents = 4

func (im *Image) newFileReader(in *Inode) (*fileReader, error) {
	ext, err := im.Extents(in)
	if err != nil {
		return nil, err
	}
	return &fileReader{im: im, in: in, ext: ext}, nil
}

// packedReader is shared by all files of the image: fragments of many small files sit in the
// same packed clusters, which are then decoded once.
func (im *Image) packedReader() (*fileReader, error) {
	im.packedOnce.Do(func() {
		p, err := im.Packed()
		if err == nil && p == nil {
			err = formatErr("fragment without a packed inode")
		}
		if err == nil && p.Layout.Compressed() {
			// The packed inode's own tail cannot be a fragment of itself.
			var h zheader
			if h, _, err = im.zheader(p); err == nil && h.advise&adviseFragmentPcluster != 0 {
				err = formatErr("packed inode with a fragment of its own")
			}
		}
		if err == nil {
			im.packed, err = im.newFileReader(p)
		}
		im.packedErr = err
	})
	return im.packed, im.packedErr
}

func (f *fileReader) ReadAt(p []byte, off int64) (int, error) {
	size := int64(f.in.Size)
	if off < 0 {
		return 0, errors.New("erofs: negative offset")
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= size {
			return n, io.EOF
		}
		i := sort.Search(len(f.ext), func(i int) bool { return f.ext[i].FileOffset+f.ext[i].Length > pos })
		if i == len(f.ext) || f.ext[i].FileOffset > pos {
			return n, formatErr("inode %d: no extent at offset %d", f.in.Nid, pos)
		}
		e := &f.ext[i]
		rel := pos - e.FileOffset
		want := min(int64(len(p)-n), e.Length-rel)
		dst := p[n : n+int(want)]
		switch {
		case e.Kind == Hole:
			clear(dst)
		case e.Kind == Fragment:
			pr, err := f.im.packedReader()
			if err != nil {
				return n, err
			}
			if pr == f {
				return n, formatErr("packed inode refers to itself")
			}
			if _, err := pr.ReadAt(dst, e.PackedOffset+rel); err != nil {
				if err == io.EOF {
					err = formatErr("inode %d: fragment at %d past the packed inode", f.in.Nid, e.PackedOffset+rel)
				}
				return n, err
			}
		case e.Kind == Plain && !e.Interlaced:
			if err := f.im.readMeta(dst, e.PhysOffset+rel); err != nil {
				return n, err
			}
		default:
			b, err := f.decoded(i)
			if err != nil {
				return n, err
			}
			copy(dst, b[rel:])
		}
		n += int(want)
	}
	return n, nil
}

// decoded returns extent i's bytes from the cache or by decoding it.
func (f *fileReader) decoded(i int) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, c := range f.cache {
		if c.idx == i {
			copy(f.cache[1:k+1], f.cache[:k])
			f.cache[0] = c
			return c.data, nil
		}
	}
	e := &f.ext[i]
	b, err := f.im.decodeExtent(e)
	if err != nil {
		return nil, fmt.Errorf("erofs: inode %d at %d: %w", f.in.Nid, e.FileOffset, err)
	}
	if len(f.cache) < cachedExtents {
		f.cache = append(f.cache, decoded{})
	}
	copy(f.cache[1:], f.cache[:len(f.cache)-1])
	f.cache[0] = decoded{i, b}
	return b, nil
}

// ReadCluster returns the bytes of an extent's physical cluster as they are in the image: the
// input to recompression checks. It is meant for pclusters (at most 1 MiB compressed); a Plain
// extent of a flat file can be far larger and is better read with io.NewSectionReader.
func (im *Image) ReadCluster(e Extent) ([]byte, error) {
	if e.Kind != Plain && e.Kind != Compressed {
		return nil, fmt.Errorf("erofs: a %s extent has no cluster", e.Kind)
	}
	if e.PhysLength > pclusterMaxSize && e.Kind == Compressed || e.PhysLength > maxDecoded {
		return nil, formatErr("cluster of %d bytes", e.PhysLength)
	}
	b := make([]byte, e.PhysLength)
	if err := im.readMeta(b, e.PhysOffset); err != nil {
		return nil, err
	}
	return b, nil
}

// decodeExtent returns the Length bytes an interlaced or compressed extent yields.
func (im *Image) decodeExtent(e *Extent) ([]byte, error) {
	if e.Length > maxDecoded {
		return nil, formatErr("extent of %d bytes", e.Length)
	}
	raw, err := im.ReadCluster(*e)
	if err != nil {
		return nil, err
	}
	out := make([]byte, e.Length)
	if e.Kind == Plain { // interlaced
		bs := im.sb.BlockSize()
		if int64(len(raw)) > bs || e.Length > int64(len(raw)) {
			return nil, formatErr("interlaced cluster of %d bytes for %d", len(raw), e.Length)
		}
		skip := e.FileOffset % bs
		right := min(bs-skip, e.Length, int64(len(raw))-skip)
		if right < 0 {
			return nil, formatErr("interlaced cluster of %d bytes", len(raw))
		}
		copy(out, raw[skip:skip+right])
		copy(out[right:], raw[:e.Length-right])
		return out, nil
	}
	if im.sb.FeatureIncompat&FeatureIncompatZeroPadding != 0 || e.Algorithm != LZ4 {
		// The stream is right-aligned; its first byte is never zero (an LZ4 token with
		// literals, MicroLZMA's negated properties).
		z := 0
		for z < len(raw) && raw[z] == 0 {
			z++
		}
		if z == len(raw) {
			return nil, formatErr("%s cluster of zeros", e.Algorithm)
		}
		raw = raw[z:]
	}
	switch e.Algorithm {
	case LZ4:
		err = lz4Decode(out, raw)
	case LZMA:
		err = microLZMADecode(out, raw, im.sb.LZMADictSize)
	case Deflate:
		_, err = io.ReadFull(flate.NewReader(bytes.NewReader(raw)), out)
	default:
		err = unsupportedErr("decoding %s clusters", e.Algorithm)
	}
	if err != nil {
		return nil, fmt.Errorf("%s cluster at %d: %w", e.Algorithm, e.PhysOffset, err)
	}
	return out, nil
}

// lz4Decode decodes an LZ4 block until out is full (EROFS may decode a prefix only).
func lz4Decode(out, in []byte) error {
	o, i := 0, 0
	bad := func(what string) error { return formatErr("lz4: %s at input %d, output %d", what, i, o) }
	for o < len(out) {
		if i >= len(in) {
			return bad("input ends")
		}
		tok := in[i]
		i++
		lit := int(tok >> 4)
		if lit == 15 {
			for {
				if i >= len(in) {
					return bad("literal length runs out")
				}
				b := in[i]
				i++
				lit += int(b)
				if lit > len(out)+len(in) {
					return bad("literal length too long")
				}
				if b != 255 {
					break
				}
			}
		}
		if i+lit > len(in) {
			return bad("literals past the input")
		}
		c := copy(out[o:], in[i:i+lit])
		o += c
		i += lit
		if o >= len(out) {
			return nil
		}
		if i+2 > len(in) {
			return bad("match offset missing")
		}
		dist := int(binary.LittleEndian.Uint16(in[i:]))
		i += 2
		if dist == 0 || dist > o {
			return bad(fmt.Sprintf("match distance %d", dist))
		}
		ml := int(tok&15) + 4
		if tok&15 == 15 {
			for {
				if i >= len(in) {
					return bad("match length runs out")
				}
				b := in[i]
				i++
				ml += int(b)
				if ml > len(out)+len(in)*255 {
					return bad("match length too long")
				}
				if b != 255 {
					break
				}
			}
		}
		// Byte by byte: matches may overlap their own output.
		for k := 0; k < ml && o < len(out); k++ {
			out[o] = out[o-dist]
			o++
		}
	}
	return nil
}

// microLZMADecode decodes a MicroLZMA stream: raw LZMA1 without header or end marker, whose
// first byte (always zero in LZMA1) carries the negated lc/lp/pb properties byte. We restore
// an .lzma header (properties, dictionary, unknown size) and the zero byte, and read until out
// is full; the decoder runs into the end of the input after that, which is expected.
func microLZMADecode(out, in []byte, dictSize uint32) error {
	props := ^in[0]
	if props >= 9*5*5 {
		return formatErr("microlzma: properties byte %#x", props)
	}
	dict := max(uint32(len(out)), 4096)
	if dictSize != 0 {
		dict = min(dict, max(dictSize, 4096))
	}
	hdr := make([]byte, 13, 13+len(in))
	hdr[0] = props
	binary.LittleEndian.PutUint32(hdr[1:], dict)
	binary.LittleEndian.PutUint64(hdr[5:], ^uint64(0))
	stream := append(hdr, 0)
	stream = append(stream, in[1:]...)
	r, err := lzma.ReaderConfig{DictCap: int(dict)}.NewReader(bytes.NewReader(stream))
	if err != nil {
		return fmt.Errorf("microlzma: %w", err)
	}
	// The decoder reports running out of input before handing out what it decoded last, so
	// an error ends the loop only when a further read brings nothing.
	n, idle := 0, 0
	var lastErr error
	for n < len(out) {
		k, err := r.Read(out[n:])
		n += k
		if err != nil {
			lastErr = err
		}
		if k > 0 {
			idle = 0
		} else if idle++; idle > 2 {
			if lastErr == nil {
				lastErr = io.ErrNoProgress
			}
			return fmt.Errorf("microlzma: %d of %d bytes: %w", n, len(out), lastErr)
		}
	}
	return nil
}

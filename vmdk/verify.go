package vmdk

import (
	"bytes"
	"fmt"
	"io"
)

// Report is the outcome of re-encoding an image from its own guest view and
// comparing the result with the image, byte for byte.
type Report struct {
	// Deflate names the deflate that re-encoded the grains, with its
	// version, e.g. "zlib-1.2.13 level 6"; set Params.Deflate to it to
	// record what reproduced the image.
	Deflate string
	// Grains is the number of allocated grains.
	Grains int
	// Mismatched lists the LBAs of the grains whose re-encoded bytes (marker,
	// compressed stream, padding) differ from the image's.
	Mismatched []uint64
	// MetadataDiff counts the differing bytes outside grains (header,
	// descriptor, grain directories and tables, padding).
	MetadataDiff int64
}

// Identical reports whether the re-encoded image equals the original.
func (r *Report) Identical() bool { return len(r.Mismatched) == 0 && r.MetadataDiff == 0 }

// Verify opens the image in orig, re-encodes it from its own guest view with
// its own Params, and compares, streaming. It fails with ErrUnsupported when
// the image is not of LayoutQemu or the build lacks zlib (cgo).
func Verify(orig io.ReaderAt, size int64) (*Report, error) {
	img, err := Open(orig, size)
	if err != nil {
		return nil, err
	}
	return img.Verify()
}

// Reproduces reports whether Encode reproduces the image in orig bit for bit
// from its own guest view and Params, and how many grains it does not.
func Reproduces(orig io.ReaderAt, size int64) (ok bool, mismatchedGrains int, err error) {
	r, err := Verify(orig, size)
	if err != nil {
		return false, 0, err
	}
	return r.Identical(), len(r.Mismatched), nil
}

// Verify re-encodes the image from its own guest view and Params and
// compares the result with the image (see the function Verify).
func (img *Image) Verify() (*Report, error) {
	p, err := img.Params()
	if err != nil {
		return nil, err
	}
	level, err := p.deflateLevel()
	if err != nil {
		return nil, err
	}
	rep := &Report{Deflate: fmt.Sprintf("zlib-%s level %d", zlibVersion(), level)}
	c := &compareEmitter{orig: img.r, size: img.fileSize, lastLBA: -1}
	// A grain whose size differs is also a byte difference, so c lists it.
	if _, err := encode(c, io.NewSectionReader(img, 0, img.Size()), p, EncodeOptions{}); err != nil {
		return nil, err
	}
	_ = p.Grains.All(func(Grain) error { rep.Grains++; return nil })
	rep.Mismatched = c.grains
	rep.MetadataDiff = c.metaDiff
	if c.pos != img.fileSize {
		rep.MetadataDiff += abs(img.fileSize - c.pos)
	}
	return rep, nil
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// compareEmitter compares what encode emits with the original image.
type compareEmitter struct {
	orig     io.ReaderAt
	size     int64
	pos      int64
	buf      []byte
	grains   []uint64
	lastLBA  int64
	metaDiff int64
}

func (c *compareEmitter) emit(b []byte, lba int64) error {
	if cap(c.buf) < len(b) {
		c.buf = make([]byte, len(b))
	}
	o := c.buf[:len(b)]
	n := 0
	if c.pos < c.size {
		want := int(min(int64(len(b)), c.size-c.pos))
		if err := readAt(c.orig, o[:want], c.pos); err != nil {
			return fmt.Errorf("vmdk: verify: read original at offset %#x: %w", c.pos, err)
		}
		n = want
	}
	c.pos += int64(len(b))
	if n == len(b) && bytes.Equal(o, b) {
		return nil
	}
	if lba >= 0 {
		if lba != c.lastLBA {
			c.grains = append(c.grains, uint64(lba))
			c.lastLBA = lba
		}
		return nil
	}
	diff := int64(len(b) - n)
	for i := range n {
		if o[i] != b[i] {
			diff++
		}
	}
	c.metaDiff += diff
	return nil
}

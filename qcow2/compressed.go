package qcow2

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
)

// CompressedCluster is one compressed guest cluster, as qemu-img convert -c
// writes them (Fedora CoreOS's nutanix image): a raw deflate stream (no zlib
// header, 4 KiB window in qemu's zlib calls, but any window inflates) that
// inflates to exactly one cluster, at any byte offset of the host file. qemu
// packs the streams of consecutive clusters back to back; the L2 entry gives
// the stream's host offset and how many 512-byte sectors it touches, not its
// length, so Len comes from inflating it.
type CompressedCluster struct {
	Guest   int64 `json:"guest"`   // guest offset of the cluster
	Host    int64 `json:"host"`    // host byte offset of the deflate stream
	Sectors int64 `json:"sectors"` // 512-byte sectors the L2 entry says the stream touches
	Len     int64 `json:"len"`     // bytes of the deflate stream, up to its final block's end
}

// CompressedClusters lists the compressed clusters of img in guest order,
// inflating each to measure its stream. It fails like ReadAt on a cluster
// that does not inflate to exactly one cluster.
func (img *Image) CompressedClusters() ([]CompressedCluster, error) {
	var out []CompressedCluster
	buf := make([]byte, img.cs)
	err := img.eachMapped(func(c int64, m mapping) error {
		if m.kind != kCompressed {
			return nil
		}
		n, err := img.streamLen(m, c<<img.cb, buf)
		if err != nil {
			return err
		}
		out = append(out, CompressedCluster{Guest: c << img.cb, Host: int64(m.host), Sectors: (m.clen + int64(m.host&511)) / 512, Len: n})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// streamLen inflates the compressed cluster m into buf and returns how many
// bytes its deflate stream takes.
func (img *Image) streamLen(m mapping, guest int64, buf []byte) (int64, error) {
	if img.hdr.CompressionType != CompressionZlib {
		return 0, fmt.Errorf("%w: compressed cluster for guest offset 0x%x uses zstd compression", ErrUnsupported, guest)
	}
	clen := min(m.clen, img.fileSize-int64(m.host))
	src := make([]byte, clen)
	if _, err := readFull(img.r, src, int64(m.host), img.fileSize); err != nil {
		return 0, fmt.Errorf("qcow2: read compressed cluster at 0x%x: %w", m.host, err)
	}
	// bytes.Reader is an io.ByteReader, so flate reads no further than the
	// stream's last byte: what it leaves unread is past the stream.
	br := bytes.NewReader(src)
	zr := flate.NewReader(br)
	defer zr.Close()
	if _, err := io.ReadFull(zr, buf); err != nil {
		return 0, fmt.Errorf("%w: compressed cluster at 0x%x (%d bytes) for guest offset 0x%x: %v", ErrCorrupt, m.host, clen, guest, err)
	}
	// The stream must end here: read its final block's end (a stream that
	// goes on is not one qemu wrote; qemu would read only its first cluster).
	var one [1]byte
	if n, err := zr.Read(one[:]); n != 0 || err != io.EOF {
		return 0, fmt.Errorf("%w: compressed cluster at 0x%x for guest offset 0x%x inflates to more than a cluster", ErrCorrupt, m.host, guest)
	}
	return clen - int64(br.Len()), nil
}

// CompressedStream returns the deflate stream of a compressed cluster.
func (img *Image) CompressedStream(c CompressedCluster) *io.SectionReader {
	return io.NewSectionReader(img.r, c.Host, c.Len)
}

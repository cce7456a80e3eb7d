package ociimage

import (
	"bufio"
	"bytes"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var (
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicGzip = []byte{0x1f, 0x8b}
)

// sniff names the compression of a stream from its first bytes: "zstd", "gzip" or "".
// Layers are recognised by content, not media type: skopeo recompresses, docker-archive keeps
// layers uncompressed, and a media type can lie.
func sniff(magic []byte) string {
	switch {
	case bytes.HasPrefix(magic, magicZstd):
		return algoZstd
	case bytes.HasPrefix(magic, magicGzip):
		return algoGzip
	}
	return ""
}

// decompress returns the uncompressed stream of a possibly compressed layer; closing it closes rc.
// zstd decodes in the decoder's own goroutines; gzip (single-threaded) runs in a goroutine that
// reads ahead, so decompression overlaps with whatever the caller does with the data.
func decompress(rc io.ReadCloser) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(rc, 1<<20)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		rc.Close()
		return nil, err
	}
	switch sniff(magic) {
	case algoZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			rc.Close()
			return nil, err
		}
		return &stackedReader{Reader: zr, close: func() error { zr.Close(); return rc.Close() }}, nil
	case algoGzip:
		gr, err := gzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, err
		}
		gr.Multistream(true)
		ra := newReadahead(gr, 1<<20, 4)
		return &stackedReader{Reader: ra, close: func() error { ra.Close(); return rc.Close() }}, nil
	}
	return &stackedReader{Reader: br, close: rc.Close}, nil
}

type stackedReader struct {
	io.Reader
	close func() error
}

func (s *stackedReader) Close() error { return s.close() }

// readahead reads from r in its own goroutine into a few buffers.
type readahead struct {
	full chan chunk
	free chan []byte
	stop chan struct{}
	cur  chunk
	off  int
	done bool
	err  error
}

type chunk struct {
	buf []byte
	err error
}

func newReadahead(r io.Reader, size, count int) *readahead {
	ra := &readahead{
		full: make(chan chunk, count),
		free: make(chan []byte, count),
		stop: make(chan struct{}),
	}
	for i := 0; i < count; i++ {
		ra.free <- make([]byte, size)
	}
	go ra.run(r)
	return ra
}

func (ra *readahead) run(r io.Reader) {
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := io.ReadFull(r, buf)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		select {
		case ra.full <- chunk{buf: buf[:n], err: err}:
		case <-ra.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

func (ra *readahead) Read(p []byte) (int, error) {
	for ra.off == len(ra.cur.buf) {
		if ra.done {
			return 0, ra.err
		}
		if ra.cur.buf != nil {
			ra.free <- ra.cur.buf[:cap(ra.cur.buf)]
		}
		ra.cur = <-ra.full
		ra.off = 0
		if ra.cur.err != nil {
			ra.done, ra.err = true, ra.cur.err
		}
	}
	n := copy(p, ra.cur.buf[ra.off:])
	ra.off += n
	return n, nil
}

// Close stops the goroutine; the caller closes the underlying stream, which ends a read that
// the goroutine may be blocked in.
func (ra *readahead) Close() {
	select {
	case <-ra.stop:
	default:
		close(ra.stop)
	}
}

package lzmarepro

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Check is an .xz integrity check type (lzma_check).
type Check int

const (
	CheckNone   Check = 0
	CheckCRC32  Check = 1
	CheckCRC64  Check = 4
	CheckSHA256 Check = 10
)

// XZOptions say how an .xz stream was made.
type XZOptions struct {
	Preset uint32 // 0-9, possibly |Extreme: `xz -9` is 9
	Check  Check  // `xz` and coreos-installer's osmet writer (xz2) use CRC64
	// Threads 0 is the single-threaded encoder (lzma_easy_encoder; `xz` before 5.6 without -T,
	// xz2's XzEncoder). Threads > 0 is the multi-threaded one (`xz -T`): independent blocks of
	// BlockSize bytes (0: liblzma's default, three times the dictionary), whose output does not
	// depend on the number of threads.
	Threads   uint32
	BlockSize uint64
}

func (o XZOptions) String() string {
	s := fmt.Sprintf("preset %s, check %d", presetString(o.Preset), o.Check)
	if o.Threads > 0 {
		s += fmt.Sprintf(", %d threads, blocks of %d", o.Threads, o.BlockSize)
	}
	return s
}

// xzMagic starts every .xz stream.
var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0}

// XZEncode compresses r into w as an .xz stream made with o and returns the bytes written.
func XZEncode(w io.Writer, r io.Reader, o XZOptions) (int64, error) {
	if o.Preset&^Extreme > 9 {
		return 0, fmt.Errorf("lzmarepro: xz preset %d out of range 0-9", o.Preset&^Extreme)
	}
	if !haveLZMA {
		return 0, ErrNoCgo
	}
	c, err := newXZEncoder(o)
	if err != nil {
		return 0, err
	}
	defer c.close()
	return pump(c, w, r)
}

// XZDecode decompresses one .xz stream from r into w and returns the bytes written.
func XZDecode(w io.Writer, r io.Reader) (int64, error) {
	if !haveLZMA {
		return 0, ErrNoCgo
	}
	c, err := newXZDecoder()
	if err != nil {
		return 0, err
	}
	defer c.close()
	return pump(c, w, r)
}

// pump runs a coder from r to w until the stream ends.
func pump(c *xzCoder, w io.Writer, r io.Reader) (int64, error) {
	in := make([]byte, 1<<20)
	out := make([]byte, 1<<20)
	var pending []byte
	var written int64
	eof := false
	for {
		if len(pending) == 0 && !eof {
			n, err := io.ReadFull(r, in)
			pending = in[:n]
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				eof = true
			} else if err != nil {
				return written, err
			}
		}
		used, produced, end, err := c.code(pending, out, eof)
		pending = pending[used:]
		if produced > 0 {
			if _, werr := w.Write(out[:produced]); werr != nil {
				return written, werr
			}
			written += int64(produced)
		}
		if err != nil {
			return written, err
		}
		if end {
			return written, nil
		}
		if eof && len(pending) == 0 && used == 0 && produced == 0 {
			return written, fmt.Errorf("lzmarepro: xz: %w", io.ErrUnexpectedEOF)
		}
	}
}

// XZCheckOf reads the check type from an .xz stream header.
func XZCheckOf(header []byte) (Check, error) {
	if len(header) < 12 || !bytes.Equal(header[:6], xzMagic) {
		return 0, fmt.Errorf("lzmarepro: not an .xz stream (no magic)")
	}
	if header[6] != 0 || header[7]&0xf0 != 0 {
		return 0, fmt.Errorf("lzmarepro: .xz stream flags %#02x%02x unknown", header[6], header[7])
	}
	return Check(header[7] & 0x0f), nil
}

// errDiffer stops a comparison at the first differing byte.
var errDiffer = errors.New("lzmarepro: output differs")

// compareWriter checks that what is written equals what r yields.
type compareWriter struct {
	r     io.Reader
	buf   []byte
	n     int64
	limit int64 // stop (with errEnough) after this many equal bytes; 0: no limit
}

var errEnough = errors.New("lzmarepro: enough equal bytes")

func (c *compareWriter) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		k := min(len(p)-done, 64<<10)
		if c.limit > 0 {
			k = int(min(int64(k), c.limit-c.n))
		}
		if cap(c.buf) < k {
			c.buf = make([]byte, k)
		}
		b := c.buf[:k]
		if _, err := io.ReadFull(c.r, b); err != nil {
			return done, errDiffer
		}
		if !bytes.Equal(b, p[done:done+k]) {
			return done, errDiffer
		}
		done += k
		c.n += int64(k)
		if c.limit > 0 && c.n >= c.limit {
			return done, errEnough
		}
	}
	return done, nil
}

// XZReproduces tells whether encoding what the .xz stream holds with o gives the stream back
// bit for bit. open is called twice (the stream is read once to decode and once to compare).
// probe > 0 compares only the first probe bytes of output: a quick test of candidate options.
func XZReproduces(open func() (io.Reader, error), o XZOptions, probe int64) (bool, error) {
	if !haveLZMA {
		return false, ErrNoCgo
	}
	src, err := open()
	if err != nil {
		return false, err
	}
	ref, err := open()
	if err != nil {
		return false, err
	}
	pr, pw := io.Pipe()
	decErr := make(chan error, 1)
	go func() {
		_, err := XZDecode(pw, src)
		pw.CloseWithError(err)
		decErr <- err
	}()
	cw := &compareWriter{r: ref, limit: probe}
	_, err = XZEncode(cw, pr, o)
	pr.CloseWithError(errDiffer) // stop the decoder if the encoder stopped first
	derr := <-decErr
	switch {
	case errors.Is(err, errEnough):
		return true, nil
	case errors.Is(err, errDiffer):
		return false, nil
	case err != nil:
		return false, err
	case derr != nil && !errors.Is(derr, errDiffer):
		return false, derr
	}
	// Equal so far: the original must end where the encoder's output did.
	var one [1]byte
	if n, _ := ref.Read(one[:]); n > 0 {
		return false, nil
	}
	return true, nil
}

// XZPresets are the presets DetectXZ tries, most likely first (osmet: 9; xz: 6).
var XZPresets = []uint32{9, 6, 0, 1, 2, 3, 4, 5, 7, 8, 9 | Extreme, 6 | Extreme}

// DetectXZ finds options that reproduce an .xz stream: the check from its header, then each
// preset of XZPresets, single-threaded and then in liblzma's default multi-threaded blocks,
// on the first probe bytes of output, and the first candidate that passes on the whole stream.
// ok is false when none does.
func DetectXZ(open func() (io.Reader, error), probe int64) (o XZOptions, ok bool, err error) {
	r, err := open()
	if err != nil {
		return o, false, err
	}
	hdr := make([]byte, 12)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return o, false, fmt.Errorf("lzmarepro: .xz header: %w", err)
	}
	check, err := XZCheckOf(hdr)
	if err != nil {
		return o, false, err
	}
	for _, threads := range []uint32{0, 1} {
		for _, p := range XZPresets {
			o := XZOptions{Preset: p, Check: check, Threads: threads}
			good, err := XZReproduces(open, o, probe)
			if err != nil {
				return o, false, err
			}
			if !good {
				continue
			}
			if good, err = XZReproduces(open, o, 0); err != nil || good {
				return o, good, err
			}
		}
	}
	return XZOptions{}, false, nil
}

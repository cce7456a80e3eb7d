package reflate

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
)

// goFlate compresses plain with Go's compress/flate at level (-2..9).
func goFlate(plain []byte, level int) ([]byte, error) {
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	if err != nil {
		return nil, err
	}
	w.Write(plain)
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

var errDiffers = errors.New("differs")

// goCheck finds out, while a stream is split, whether this build's compress/flate makes it
// from its plain data at some level (its output does not depend on how the plain data is cut
// into Writes). Each level still in the running compresses the plain data as it comes and
// compares its output with the stream's bytes; a level drops out at its first different
// byte, so the check costs little once the stream is known not to be Go's.
type goCheck struct {
	buf   []byte // the stream's bytes from offset base on
	base  int64
	cands []*goCand
}

type goCand struct {
	level int
	w     *flate.Writer
	off   int64 // stream offset of the next byte this level writes
	bad   bool
}

var goLevels = []int{-1, 9, 1, 2, 3, 4, 5, 7, 8, -2, 0}

func newGoCheck() *goCheck {
	g := &goCheck{}
	for _, l := range goLevels {
		c := &goCand{level: l}
		c.w, _ = flate.NewWriter(&goCandWriter{g, c}, l)
		g.cands = append(g.cands, c)
	}
	return g
}

type goCandWriter struct {
	g *goCheck
	c *goCand
}

func (w *goCandWriter) Write(p []byte) (int, error) {
	g, c := w.g, w.c
	i := c.off - g.base
	if c.bad || i+int64(len(p)) > int64(len(g.buf)) || !bytes.Equal(p, g.buf[i:i+int64(len(p))]) {
		c.bad = true
		return 0, errDiffers
	}
	c.off += int64(len(p))
	return len(p), nil
}

// add appends stream bytes (all those before the plain data fed so far, at least).
func (g *goCheck) add(b []byte) {
	if g == nil || len(g.cands) == 0 {
		return
	}
	g.buf = append(g.buf, b...)
}

// feed compresses more plain data at every level still in the running.
func (g *goCheck) feed(plain []byte) {
	if g == nil {
		return
	}
	for len(plain) > 0 && len(g.cands) > 0 {
		k := min(len(plain), 64<<10)
		live := g.cands[:0]
		for _, c := range g.cands {
			if _, err := c.w.Write(plain[:k]); err == nil && !c.bad {
				live = append(live, c)
			}
		}
		g.cands = live
		plain = plain[k:]
	}
	// Drop the bytes every level has compared.
	lo := g.base + int64(len(g.buf))
	for _, c := range g.cands {
		lo = min(lo, c.off)
	}
	g.buf = append(g.buf[:0], g.buf[lo-g.base:]...)
	g.base = lo
	if len(g.cands) == 0 {
		g.buf = nil
	}
}

// finish reports whether some level made the whole stream of n bytes (stored as level+2).
func (g *goCheck) finish(n int64) (byte, bool) {
	if g == nil {
		return 0, false
	}
	for _, c := range g.cands {
		if err := c.w.Close(); err == nil && !c.bad && c.off == n {
			return byte(c.level + 2), true
		}
	}
	return 0, false
}

// rebuildGo compresses the plain data with compress/flate at level.
func rebuildGo(w io.Writer, plain io.Reader, level int) error {
	fw, err := flate.NewWriter(w, level)
	if err != nil {
		return err
	}
	if _, err := io.Copy(fw, plain); err != nil {
		return err
	}
	return fw.Close()
}

package reflate

import (
	"bytes"
	"compress/flate"
	"errors"
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

// prefixWriter fails as soon as what is written departs from want, so that trying a level
// that does not reproduce the stream costs only up to the first different block.
type prefixWriter struct {
	want []byte
	n    int
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > len(w.want) || !bytes.Equal(p, w.want[w.n:w.n+len(p)]) {
		return 0, errDiffers
	}
	w.n += len(p)
	return len(p), nil
}

// goFlateLevel reports whether this build's compress/flate makes comp from plain in one
// Write and Close, and at which level (stored as level+2).
func goFlateLevel(plain, comp []byte) (byte, bool) {
	for _, level := range []int{-1, 9, 1, 2, 3, 4, 5, 7, 8, -2, 0} {
		pw := &prefixWriter{want: comp}
		w, _ := flate.NewWriter(pw, level)
		if _, err := w.Write(plain); err != nil {
			continue
		}
		if err := w.Close(); err != nil || pw.n != len(comp) {
			continue
		}
		return byte(level + 2), true
	}
	return 0, false
}

package rehydrate

import (
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/rehydrator/rehydrator/erofsprecomp"
)

// OpEROFS turns a file whose EROFS images were expanded (erofsprecomp, each image's
// LZMA clusters replaced by their plain data) back into the original: the bytes around the
// images verbatim, each image compressed again on every core. The live ISO of Fedora 42 and
// later holds its root.erofs inside the rootfs.img cpio.
const OpEROFS = "erofs-restore"

// erofsSpan is one EROFS image inside the original file: at Offset, Size bytes long, and
// Expanded bytes long in the expanded stream (erofsprecomp's stream, header included).
type erofsSpan struct {
	Offset   int64 `json:"offset"`
	Size     int64 `json:"size"`
	Expanded int64 `json:"expanded"`
}

// erofsParams list the expanded images in file order.
type erofsParams struct {
	Images []erofsSpan `json:"images"`
}

func (p *erofsParams) Validate() error {
	if len(p.Images) == 0 {
		return errors.New("no images")
	}
	var end int64
	for i, s := range p.Images {
		switch {
		case s.Offset < end:
			return fmt.Errorf("image %d at %d starts before the end of the one before (%d)", i, s.Offset, end)
		case s.Size <= 0 || s.Expanded <= 0:
			return fmt.Errorf("image %d at %d: size %d, expanded %d, want both positive", i, s.Offset, s.Size, s.Expanded)
		case s.Offset > 1<<62-s.Size:
			return fmt.Errorf("image %d at %d: size %d runs past any file", i, s.Offset, s.Size)
		}
		end = s.Offset + s.Size
	}
	return nil
}

func init() {
	register(opSpec[*erofsParams]{
		name:   OpEROFS,
		params: fromJSON[erofsParams](true),
		str: func(s *Step) string {
			p, err := fromJSON[erofsParams](true)(s)
			if err != nil || len(p.Images) == 0 {
				return OpEROFS
			}
			return fmt.Sprintf("%s (%d images, the first at %d)", OpEROFS, len(p.Images), p.Images[0].Offset)
		},
		apply: func(_ *call, p *erofsParams, in *value) (*value, error) {
			return pipe(in, in.key+"|"+OpEROFS+fmt.Sprint(p.Images), -1, func(w io.Writer, r io.Reader) error {
				if err := restoreEROFS(w, r, p, runtime.GOMAXPROCS(0)); err != nil {
					return fmt.Errorf("%s: %w", OpEROFS, err)
				}
				return nil
			}), nil
		},
	})
}

// countWriter counts what passes through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// restoreEROFS writes the original file from its expanded stream r: verbatim bytes up to each
// image, the image restored from its Expanded bytes, verbatim bytes after the last.
func restoreEROFS(w io.Writer, r io.Reader, p *erofsParams, workers int) error {
	var pos int64
	for i, s := range p.Images {
		if n, err := io.CopyN(w, r, s.Offset-pos); err != nil {
			return fmt.Errorf("input ends after %d of the %d bytes before EROFS image %d: %w", pos+n, s.Offset, i, noEOF(err))
		}
		lr := &io.LimitedReader{R: r, N: s.Expanded}
		cw := &countWriter{w: w}
		if err := erofsprecomp.Restore(cw, lr, workers); err != nil {
			if errors.Is(err, errors.ErrUnsupported) {
				return fmt.Errorf("this rehydrator was built without cgo (no liblzma), so it cannot compress the EROFS image at %d again: use a build with cgo, such as the release's container image (%w)", s.Offset, err)
			}
			return fmt.Errorf("EROFS image at %d: %w", s.Offset, err)
		}
		if lr.N != 0 || cw.n != s.Size {
			return fmt.Errorf("EROFS image at %d: restored %d bytes from %d, the recipe says %d from %d (a damaged blob or recipe)",
				s.Offset, cw.n, s.Expanded-lr.N, s.Size, s.Expanded)
		}
		pos = s.Offset + s.Size
	}
	_, err := io.Copy(w, r)
	return err
}

// noEOF turns a short input's io.EOF into io.ErrUnexpectedEOF: a truncated stream is an error.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

package rehydrate

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// OpExtract keeps a byte range of its input: Step.Offset and Step.Length.
const OpExtract = "extract"

type extractParams struct{ Offset, Length int64 }

func (p extractParams) Validate() error {
	if p.Offset < 0 || p.Length < 0 {
		return errors.New("negative extract range")
	}
	return nil
}

func init() {
	register(opSpec[extractParams]{
		name:   OpExtract,
		params: func(s *Step) (extractParams, error) { return extractParams{s.Offset, s.Length}, nil },
		str:    func(s *Step) string { return fmt.Sprintf("extract(%d,%d)", s.Offset, s.Length) },
		apply:  applyExtract,
	})
}

func applyExtract(c *call, p extractParams, in *value) (*value, error) {
	if in.size >= 0 && p.Offset+p.Length > in.size {
		return nil, fmt.Errorf("%w: range %d+%d past the end of a %d-byte input", ErrBadRecipe, p.Offset, p.Length, in.size)
	}
	key := fmt.Sprintf("%s|extract:%d:%d", in.key, p.Offset, p.Length)
	if in.ra == nil && strings.HasPrefix(in.key, "ref:") {
		// Pieces of another artifact (the PXE files of the live ISO) usually come several at a
		// time: rebuild it once into a spool that they all read from.
		ra, err := c.e.randomAccess(in)
		if err != nil {
			return nil, err
		}
		in = &value{key: in.key, ra: ra, size: in.size}
	}
	if in.ra != nil {
		sr := io.NewSectionReader(in.ra, p.Offset, p.Length)
		return &value{key: key, r: readCloser{sr, closerFunc(in.close)}, ra: sr, size: p.Length}, nil
	}
	if _, err := io.CopyN(io.Discard, in.r, p.Offset); err != nil {
		return nil, fmt.Errorf("skip to %d: %w", p.Offset, err)
	}
	return &value{key: key, r: readCloser{io.LimitReader(in.r, p.Length), in.r}, size: p.Length}, nil
}

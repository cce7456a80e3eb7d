package filemap

import (
	"fmt"
	"io"
	"sort"
)

// Reader reads the synthetic base a Map describes, lazily, out of the base.
type Reader struct {
	m    *Map
	base io.ReaderAt
}

// NewReader returns the synthetic base of m over base.
func NewReader(base io.ReaderAt, m *Map) *Reader {
	return &Reader{m: m, base: base}
}

// Size is the synthetic base's size (Map.Total).
func (r *Reader) Size() int64 { return r.m.Total() }

// ReadAt implements io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("filemap: read at negative offset %d", off)
	}
	total := r.m.Total()
	if off >= total {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > total-off {
		p = p[:total-off]
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= r.m.Size {
			k, err := readFullAt(r.base, p[n:], pos-r.m.Size)
			n += k
			if err != nil {
				return n, fmt.Errorf("filemap: base tail at %d: %w", pos-r.m.Size, err)
			}
			break
		}
		runs := r.m.Runs
		i := sort.Search(len(runs), func(i int) bool { return runs[i].Target+runs[i].Length > pos })
		var next int64 = r.m.Size
		if i < len(runs) {
			next = runs[i].Target
		}
		if pos < next { // a gap: zeros up to the next run
			k := int(min(next-pos, int64(len(p)-n)))
			clear(p[n : n+k])
			n += k
			continue
		}
		ru := runs[i]
		k := int(min(ru.Target+ru.Length-pos, int64(len(p)-n)))
		got, err := readFullAt(r.base, p[n:n+k], ru.Base+pos-ru.Target)
		n += got
		if err != nil {
			return n, fmt.Errorf("filemap: base bytes %d..%d for synthetic offset %d: %w", ru.Base, ru.Base+ru.Length, ru.Target, err)
		}
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}

func readFullAt(r io.ReaderAt, p []byte, off int64) (int, error) {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return n, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

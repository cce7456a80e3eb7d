package filemap

import (
	"encoding/binary"
	"fmt"
	"math"
)

// The encoded map:
//
//	"RHFMAP"  6 bytes
//	version   uvarint (1)
//	size      uvarint: the synthetic region's size
//	tail      uvarint: the base bytes appended after it
//	count     uvarint: the number of runs
//	count x   uvarint gap (target offset minus the end of the previous run's target),
//	          varint  base offset minus the end of the previous run's base (zigzag),
//	          uvarint length
//
// Runs sorted by target make the gaps small; files laid out in the same order in both images
// make the base deltas small too.
const (
	mapMagic   = "RHFMAP"
	mapVersion = 1
	// minRunBytes is the least an encoded run takes: Decode refuses counts its input cannot hold.
	minRunBytes = 3
)

// MarshalBinary encodes the map.
func (m *Map) MarshalBinary() ([]byte, error) {
	b := append([]byte(mapMagic), 0)[:len(mapMagic)]
	b = binary.AppendUvarint(b, mapVersion)
	b = binary.AppendUvarint(b, uint64(m.Size))
	b = binary.AppendUvarint(b, uint64(m.Tail))
	b = binary.AppendUvarint(b, uint64(len(m.Runs)))
	var tEnd, bEnd int64
	for i, r := range m.Runs {
		if r.Target < tEnd || r.Length <= 0 || r.Base < 0 || r.Target+r.Length > m.Size {
			return nil, fmt.Errorf("filemap: run %d (%d bytes at %d from %d) out of order or outside the %d-byte map", i, r.Length, r.Target, r.Base, m.Size)
		}
		b = binary.AppendUvarint(b, uint64(r.Target-tEnd))
		b = binary.AppendVarint(b, r.Base-bEnd)
		b = binary.AppendUvarint(b, uint64(r.Length))
		tEnd, bEnd = r.Target+r.Length, r.Base+r.Length
	}
	return b, nil
}

// UnmarshalBinary decodes a map written by MarshalBinary, checking that its runs are sorted,
// disjoint and inside the map.
func (m *Map) UnmarshalBinary(b []byte) error {
	if len(b) < len(mapMagic) || string(b[:len(mapMagic)]) != mapMagic {
		return fmt.Errorf("%w: no %q magic", ErrFormat, mapMagic)
	}
	p := b[len(mapMagic):]
	uv := func(what string) (int64, error) {
		v, n := binary.Uvarint(p)
		if n <= 0 || v > math.MaxInt64/2 || (n > 1 && p[n-1] == 0) { // one encoding per value
			return 0, fmt.Errorf("%w: bad %s at byte %d", ErrFormat, what, len(b)-len(p))
		}
		p = p[n:]
		return int64(v), nil
	}
	v, err := uv("version")
	if err != nil {
		return err
	}
	if v != mapVersion {
		return fmt.Errorf("%w: version %d, this build reads %d: use a newer rehydrator", ErrFormat, v, mapVersion)
	}
	size, err := uv("size")
	if err != nil {
		return err
	}
	tail, err := uv("tail")
	if err != nil {
		return err
	}
	count, err := uv("run count")
	if err != nil {
		return err
	}
	if count > int64(len(p)/minRunBytes) {
		return fmt.Errorf("%w: %d runs in %d bytes", ErrFormat, count, len(p))
	}
	runs := make([]Run, 0, count)
	var tEnd, bEnd int64
	for i := int64(0); i < count; i++ {
		gap, err := uv("run gap")
		if err != nil {
			return err
		}
		db, n := binary.Varint(p)
		if n <= 0 || db > math.MaxInt64/2 || db < -math.MaxInt64/2 || (n > 1 && p[n-1] == 0) {
			return fmt.Errorf("%w: bad run base at byte %d", ErrFormat, len(b)-len(p))
		}
		p = p[n:]
		length, err := uv("run length")
		if err != nil {
			return err
		}
		r := Run{Target: tEnd + gap, Base: bEnd + db, Length: length}
		if length == 0 || r.Target > size || r.Length > size-r.Target || r.Base < 0 || r.Base > math.MaxInt64/2-r.Length {
			return fmt.Errorf("%w: run %d (%d bytes at %d from %d) outside the %d-byte map", ErrFormat, i, r.Length, r.Target, r.Base, size)
		}
		runs = append(runs, r)
		tEnd, bEnd = r.Target+r.Length, r.Base+r.Length
	}
	if len(p) != 0 {
		return fmt.Errorf("%w: %d bytes after the last run", ErrFormat, len(p))
	}
	*m = Map{Size: size, Tail: tail, Runs: runs}
	return nil
}

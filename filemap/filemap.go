package filemap

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"
)

// ErrFormat marks an encoded map that is not well formed.
var ErrFormat = errors.New("filemap: invalid map")

// Extent is where one byte range of a file lies in an image.
type Extent struct {
	FileOffset int64 // in the file
	Offset     int64 // in the image (the base's bytes, or the target's expanded bytes)
	Length     int64
}

// File is one regular file of an image: its path (slash-separated, relative to the root, no
// leading slash), size and the extents holding its data, sorted by FileOffset. Holes (sparse
// ranges, unwritten extents) have no extent: they read as zeros.
type File struct {
	Path    string
	Size    int64
	Extents []Extent
}

// Run says that the synthetic base holds, at Target, the Length base bytes at Base.
type Run struct {
	Target, Base, Length int64
}

// Map describes a synthetic base: Size bytes in which the runs' base bytes lie at their Target
// offsets and every other byte is zero, followed by the base's first Tail bytes (0: none).
type Map struct {
	Size  int64
	Tail  int64
	Runs  []Run // sorted by Target, disjoint, inside [0, Size)
	Stats Stats // how it was built (not encoded)
}

// Total is the synthetic base's size.
func (m *Map) Total() int64 { return m.Size + m.Tail }

// Stats describe a Build.
type Stats struct {
	TargetFiles, BaseFiles int
	ByPath, ByContent      int   // paired files
	MappedBytes            int64 // target bytes the runs cover
	TargetBytes            int64 // bytes of the target's files
}

// Options tune Build.
type Options struct {
	// Base and Target, when both set, let Build pair the files left unpaired by path with a
	// file of the same size and SHA-256 (a file moved or renamed between the two images).
	Base, Target io.ReaderAt
	// Tail is how many bytes of the base the synthetic base ends with (usually the base's size).
	Tail int64
}

// Build pairs the target's files with the base's and returns the map of a synthetic base of
// size bytes (the target's size) in which each paired file's base data lies where the target
// has it. Target bytes that two files share (deduplicated data) are mapped once.
func Build(base, target []File, size int64, opt Options) (*Map, error) {
	st := Stats{TargetFiles: len(target), BaseFiles: len(base)}
	byPath := make(map[string]int, len(base))
	for i, f := range base {
		byPath[f.Path] = i
	}
	usedBase := make([]bool, len(base))
	pair := make([]int, len(target))
	var unpaired []int
	for i, f := range target {
		st.TargetBytes += f.Size
		pair[i] = -1
		if j, ok := byPath[f.Path]; ok {
			pair[i] = j
			usedBase[j] = true
			st.ByPath++
			continue
		}
		unpaired = append(unpaired, i)
	}
	if opt.Base != nil && opt.Target != nil && len(unpaired) > 0 {
		n, err := pairByContent(base, target, usedBase, unpaired, pair, opt.Base, opt.Target)
		if err != nil {
			return nil, err
		}
		st.ByContent = n
	}
	var runs []Run
	for i, f := range target {
		if pair[i] < 0 {
			continue
		}
		runs = appendRuns(runs, base[pair[i]].Extents, f.Extents, size)
	}
	m := &Map{Size: size, Tail: opt.Tail, Runs: normalize(runs)}
	for _, r := range m.Runs {
		st.MappedBytes += r.Length
	}
	m.Stats = st
	return m, nil
}

// appendRuns intersects a file's extents in the base and in the target by file offset.
func appendRuns(runs []Run, b, t []Extent, size int64) []Run {
	b = sortedExtents(b)
	t = sortedExtents(t)
	i, j := 0, 0
	for i < len(b) && j < len(t) {
		lo := max(b[i].FileOffset, t[j].FileOffset)
		hi := min(b[i].FileOffset+b[i].Length, t[j].FileOffset+t[j].Length)
		if lo < hi {
			tgt := t[j].Offset + lo - t[j].FileOffset
			if tgt >= 0 && tgt < size {
				n := min(hi-lo, size-tgt)
				runs = append(runs, Run{Target: tgt, Base: b[i].Offset + lo - b[i].FileOffset, Length: n})
			}
		}
		if b[i].FileOffset+b[i].Length < t[j].FileOffset+t[j].Length {
			i++
		} else {
			j++
		}
	}
	return runs
}

func sortedExtents(e []Extent) []Extent {
	if sort.SliceIsSorted(e, func(a, b int) bool { return e[a].FileOffset < e[b].FileOffset }) {
		return e
	}
	c := append([]Extent(nil), e...)
	sort.Slice(c, func(a, b int) bool { return c[a].FileOffset < c[b].FileOffset })
	return c
}

// normalize sorts runs by target, cuts overlaps (the first run keeps a shared target byte) and
// joins runs that continue one another in both spaces.
func normalize(runs []Run) []Run {
	sort.SliceStable(runs, func(a, b int) bool { return runs[a].Target < runs[b].Target })
	out := runs[:0]
	var end int64
	for _, r := range runs {
		if r.Length <= 0 || r.Base < 0 {
			continue
		}
		if r.Target < end {
			cut := end - r.Target
			if cut >= r.Length {
				continue
			}
			r.Target += cut
			r.Base += cut
			r.Length -= cut
		}
		if n := len(out); n > 0 && out[n-1].Target+out[n-1].Length == r.Target && out[n-1].Base+out[n-1].Length == r.Base {
			out[n-1].Length += r.Length
		} else {
			out = append(out, r)
		}
		end = r.Target + r.Length
	}
	return out
}

// pairByContent pairs unpaired target files with unused base files of the same size and SHA-256.
func pairByContent(base, target []File, usedBase []bool, unpaired, pair []int, br, tr io.ReaderAt) (int, error) {
	sizes := make(map[int64]bool)
	for _, i := range unpaired {
		if target[i].Size > 0 {
			sizes[target[i].Size] = true
		}
	}
	bySum := make(map[[sha256.Size]byte]int)
	for j, f := range base {
		if usedBase[j] || !sizes[f.Size] {
			continue
		}
		sum, err := fileSum(br, f)
		if err != nil {
			return 0, fmt.Errorf("filemap: base file %s: %w", f.Path, err)
		}
		if _, dup := bySum[sum]; !dup {
			bySum[sum] = j
		}
	}
	n := 0
	for _, i := range unpaired {
		f := target[i]
		if f.Size == 0 || len(bySum) == 0 {
			continue
		}
		sum, err := fileSum(tr, f)
		if err != nil {
			return 0, fmt.Errorf("filemap: target file %s: %w", f.Path, err)
		}
		if j, ok := bySum[sum]; ok && base[j].Size == f.Size {
			pair[i] = j
			n++
		}
	}
	return n, nil
}

// fileSum hashes a file's contents (holes as zeros) read through its extents.
func fileSum(r io.ReaderAt, f File) ([sha256.Size]byte, error) {
	h := sha256.New()
	var pos int64
	var zero [4096]byte
	pad := func(to int64) {
		for pos < to {
			n := min(to-pos, int64(len(zero)))
			h.Write(zero[:n])
			pos += n
		}
	}
	for _, e := range sortedExtents(f.Extents) {
		if e.FileOffset < pos || e.FileOffset+e.Length > f.Size || e.Length < 0 {
			return [sha256.Size]byte{}, fmt.Errorf("extents overlap or pass the end of the %d-byte file", f.Size)
		}
		pad(e.FileOffset)
		if _, err := io.Copy(h, io.NewSectionReader(r, e.Offset, e.Length)); err != nil {
			return [sha256.Size]byte{}, err
		}
		pos += e.Length
	}
	pad(f.Size)
	var s [sha256.Size]byte
	copy(s[:], h.Sum(nil))
	return s, nil
}

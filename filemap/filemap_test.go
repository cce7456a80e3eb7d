package filemap

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
)

// A base with files in 4 KiB blocks and a target packing them end to end in another order: the
// synthetic base holds each file's bytes where the target has them.
func TestBuildAndRead(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	const n = 50
	var base []byte
	var bfiles, tfiles []File
	contents := make([][]byte, n)
	for i := range n {
		c := make([]byte, 1+rnd.Intn(9000))
		rnd.Read(c)
		contents[i] = c
		off := int64(len(base))
		var ext []Extent
		// Split the base file into 4 KiB extents placed out of order for half the files.
		for fo := int64(0); fo < int64(len(c)); fo += 4096 {
			ext = append(ext, Extent{FileOffset: fo, Offset: off + fo, Length: min(4096, int64(len(c))-fo)})
		}
		if i%2 == 1 && len(ext) > 1 {
			ext[0], ext[1] = ext[1], ext[0] // unsorted extents
		}
		base = append(base, c...)
		base = append(base, make([]byte, (4096-len(c)%4096)%4096)...)
		bfiles = append(bfiles, File{Path: name(i), Size: int64(len(c)), Extents: ext})
	}
	var target []byte
	for _, i := range rnd.Perm(n) {
		target = append(target, 0xEE, 0xEE, 0xEE) // metadata between files
		off := int64(len(target))
		c := contents[i]
		// Two pieces: the head, and a tail elsewhere (as a fragment).
		cut := int64(len(c)) / 2
		target = append(target, c[:cut]...)
		tfiles = append(tfiles, File{Path: name(i), Size: int64(len(c)), Extents: []Extent{
			{FileOffset: 0, Offset: off, Length: cut},
			{FileOffset: cut, Offset: -1, Length: int64(len(c)) - cut}, // fixed below
		}})
	}
	for k := range tfiles {
		f := &tfiles[k]
		i := index(f.Path)
		f.Extents[1].Offset = int64(len(target))
		target = append(target, contents[i][f.Extents[1].FileOffset:]...)
	}
	tfiles = append(tfiles, File{Path: "only/in/target", Size: 3, Extents: []Extent{{0, 0, 3}}})
	m, err := Build(bfiles, tfiles, int64(len(target)), Options{Tail: int64(len(base))})
	if err != nil {
		t.Fatal(err)
	}
	if m.Stats.ByPath != n {
		t.Errorf("paired %d files by path, want %d", m.Stats.ByPath, n)
	}
	syn := make([]byte, m.Total())
	if _, err := NewReader(bytes.NewReader(base), m).ReadAt(syn, 0); err != nil {
		t.Fatal(err)
	}
	for i := range target {
		if target[i] != 0xEE && syn[i] != target[i] {
			t.Fatalf("synthetic byte %d is %#x, target %#x", i, syn[i], target[i])
		}
	}
	if !bytes.Equal(syn[len(target):], base) {
		t.Fatal("the tail is not the base")
	}
	// Reads at every alignment agree with the whole.
	r := NewReader(bytes.NewReader(base), m)
	for off := 0; off < len(syn); off += 777 {
		b := make([]byte, 1000)
		k, err := r.ReadAt(b, int64(off))
		if k != min(1000, len(syn)-off) || (err != nil && err != io.EOF) || !bytes.Equal(b[:k], syn[off:off+k]) {
			t.Fatalf("ReadAt(%d): %d, %v", off, k, err)
		}
	}
	enc, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Map
	if err := back.UnmarshalBinary(enc); err != nil {
		t.Fatal(err)
	}
	if back.Size != m.Size || back.Tail != m.Tail || len(back.Runs) != len(m.Runs) {
		t.Fatalf("decoded map differs")
	}
	for i := range back.Runs {
		if back.Runs[i] != m.Runs[i] {
			t.Fatalf("run %d: %+v, want %+v", i, back.Runs[i], m.Runs[i])
		}
	}
	t.Logf("%d runs in %d bytes", len(m.Runs), len(enc))
}

// Files renamed between the images pair by size and content.
func TestBuildByContent(t *testing.T) {
	base := []byte("....hello world.......other")
	bfiles := []File{{Path: "a", Size: 11, Extents: []Extent{{0, 4, 11}}}, {Path: "b", Size: 5, Extents: []Extent{{0, 22, 5}}}}
	target := []byte("xxotherhello world")
	tfiles := []File{{Path: "renamed", Size: 11, Extents: []Extent{{0, 7, 11}}}, {Path: "b2", Size: 5, Extents: []Extent{{0, 2, 5}}}}
	m, err := Build(bfiles, tfiles, int64(len(target)), Options{Base: bytes.NewReader(base), Target: bytes.NewReader(target)})
	if err != nil {
		t.Fatal(err)
	}
	if m.Stats.ByContent != 2 {
		t.Fatalf("paired %d by content, want 2", m.Stats.ByContent)
	}
	syn := make([]byte, m.Total())
	if _, err := NewReader(bytes.NewReader(base), m).ReadAt(syn, 0); err != nil {
		t.Fatal(err)
	}
	if string(syn) != "\x00\x00otherhello world" {
		t.Fatalf("synthetic base %q", syn)
	}
}

// Deduplicated target data (two files sharing blocks) and overlapping runs map once.
func TestNormalizeOverlaps(t *testing.T) {
	got := normalize([]Run{{10, 100, 5}, {0, 0, 10}, {12, 200, 10}, {15, 105, 0}, {22, 212, 3}})
	want := []Run{{0, 0, 10}, {10, 100, 5}, {15, 203, 7}, {22, 212, 3}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%+v, want %+v", got, want)
		}
	}
}

func TestExpansionLocate(t *testing.T) {
	// Original: 100 plain bytes, a frame of 50 at 100 (-> 300), 20 plain, a frame of 30 at 170 (-> 10).
	e, err := NewExpansion(16, []Frame{{100, 50, 300}, {170, 30, 10}})
	if err != nil {
		t.Fatal(err)
	}
	got := e.Locate([]Piece{
		{FileOffset: 0, Length: 10, Offset: 5},
		{FileOffset: 10, Length: 100, Offset: 100, Within: 200, InFrame: true},
		{FileOffset: 110, Length: 5, Offset: 150, Within: 10},
		{FileOffset: 115, Length: 5, Offset: 170, Within: 5, InFrame: true},
		{FileOffset: 120, Length: 5, Offset: 300},
		{FileOffset: 125, Length: 5, Offset: 170, Within: 8, InFrame: true}, // past the frame's content
		{FileOffset: 130, Length: 5, Offset: 97},                            // across a frame
		{FileOffset: 135, Length: 5, Offset: 120, InFrame: true},            // no frame starts there
	}, 0)
	want := []Extent{{0, 21, 10}, {10, 316, 100}, {110, 16 + 150 + 250 + 10, 5}, {115, 16 + 170 + 250 + 5, 5}, {120, 16 + 300 + 230, 5}}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("extent %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := NewExpansion(0, []Frame{{10, 5, 1}, {12, 5, 1}}); err == nil {
		t.Fatal("overlapping frames accepted")
	}
}

func TestUnmarshalRefuses(t *testing.T) {
	good, _ := (&Map{Size: 100, Runs: []Run{{0, 5, 10}, {20, 0, 5}}}).MarshalBinary()
	for _, b := range [][]byte{nil, []byte("RHFMAP"), append([]byte("RHFMAP\x02"), good[7:]...), good[:len(good)-1], append(good, 0),
		[]byte("RHFMAP\x01\x0a\x00\x01\x00\x00\x0b"), []byte("RHFMAP\x01\x0a\x00\xff\xff\xff\xff\x0f")} {
		var m Map
		if err := m.UnmarshalBinary(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: %v, want ErrFormat", b, err)
		}
	}
}

func FuzzMap(f *testing.F) {
	for _, m := range []*Map{{Size: 100, Tail: 7, Runs: []Run{{0, 5, 10}, {20, 0, 5}, {90, 1 << 40, 10}}}, {}} {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte("RHFMAP\x01\x0a\x00\x01\x00\x01\x0b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Map
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded map does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs")
		}
		base := bytes.Repeat([]byte{1}, 64)
		r := NewReader(bytes.NewReader(base), &m)
		buf := make([]byte, 256)
		for off := int64(0); off < min(r.Size(), 4096); off += 200 {
			r.ReadAt(buf, off) // errors are fine (base too short); no panic
		}
	})
}

func name(i int) string { return "usr/share/f" + string(rune('A'+i/26)) + string(rune('a'+i%26)) }
func index(p string) int {
	s := p[len(p)-2:]
	return int(s[0]-'A')*26 + int(s[1]-'a')
}

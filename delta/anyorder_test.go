package delta

import (
	"bytes"
	"testing"
)

// Files of a tree laid out in another order (a squashfs of a disk's root filesystem): forward-only
// copies lose most of them; AnyOrder copies them all, and PatchAt applies the delta.
func TestAnyOrderShuffledFiles(t *testing.T) {
	const files, fileLen = 64, 12 << 10
	base := randomBytes(7, files*fileLen)
	r := rng(99)
	var target []byte
	for _, i := range permutation(&r, files) {
		target = append(target, base[i*fileLen:(i+1)*fileLen]...)
		target = append(target, 0xA5, byte(i)) // a header between files, as an archive has
	}
	var fwd, any bytes.Buffer
	if _, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &fwd, Options{}); err != nil {
		t.Fatal(err)
	}
	st, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &any, Options{AnyOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := PatchAt(bytes.NewReader(base), int64(len(base)), bytes.NewReader(any.Bytes()), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), target) {
		t.Fatal("PatchAt of the any-order delta differs from the target")
	}
	if st.LiteralBytes > 4*files {
		t.Errorf("any-order delta carries %d literal bytes, want only the %d header bytes", st.LiteralBytes, 2*files)
	}
	if fwd.Len() < 4*any.Len() {
		t.Errorf("forward-only delta %d bytes, any-order %d: expected the shuffle to defeat forward-only copies", fwd.Len(), any.Len())
	}
	t.Logf("forward-only %d bytes, any-order %d bytes (%d copies)", fwd.Len(), any.Len(), st.Copies)
}

func permutation(r *rng, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// Small files (under one index block) that moved far apart are copied too: without order, a far
// match leaves no base behind it unusable, so it needs no more length than a near one. When
// they all start with the same bytes (a gzip header), the copy of one file runs on into the
// header of the next, past the window the index holds for it: the search starts before the end
// of that copy.
func TestAnyOrderSmallFilesFarApart(t *testing.T) {
	for _, header := range []string{"", "\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03"} {
		const files, slot = 600, 16 << 10 // 9.6 MB: most moves are over a megabyte
		r := rng(5)
		base := make([]byte, files*slot)
		lens := make([]int, files)
		for i := range files {
			lens[i] = 200 + r.intn(3000)
			copy(base[i*slot:], randomBytes(uint64(2*i), lens[i])) // seeds differ in more than bit 0
			copy(base[i*slot:], header)
		}
		target := make([]byte, len(base))
		for k, i := range permutation(&r, files) {
			copy(target[k*slot:], base[i*slot:i*slot+lens[i]])
		}
		var d bytes.Buffer
		st, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &d, Options{AnyOrder: true})
		if err != nil {
			t.Fatal(err)
		}
		checkPatchAt(t, base, target, d.Bytes())
		if st.LiteralBytes > 0 {
			t.Errorf("header %q: any-order delta carries %d literal bytes, want none", header, st.LiteralBytes)
		}
	}
}

// A zero run of the target is copied from a zero run of the base wherever it lies, here before
// every other copy's base offset.
func TestAnyOrderZeroRunsFromAnywhere(t *testing.T) {
	data := randomBytes(3, 2<<20)
	base := append(make([]byte, 2<<20), data...)
	target := append(append([]byte(nil), data...), make([]byte, 3<<20)...) // longer than the base's run
	var fwd, d bytes.Buffer
	fst, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &fwd, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &d, Options{AnyOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	checkPatchAt(t, base, target, d.Bytes())
	if st.LiteralBytes > 0 || fst.LiteralBytes < 2<<20 {
		t.Errorf("literal bytes: any order %d (want 0), forward-only %d (want the zeros)", st.LiteralBytes, fst.LiteralBytes)
	}
}

func checkPatchAt(t *testing.T, base, target, d []byte) {
	t.Helper()
	var out bytes.Buffer
	if err := PatchAt(bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), target) {
		t.Fatal("PatchAt of the any-order delta differs from the target")
	}
}

// FuzzAnyOrder: an any-order delta of any pair, at any block size, adds up and PatchAt turns
// the base into the target.
func FuzzAnyOrder(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s[0], s[1], uint16(i*100))
	}
	f.Fuzz(func(t *testing.T, base, target []byte, bs uint16) {
		var d bytes.Buffer
		st, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &d,
			Options{BlockSize: minBlockSize + int(bs)%8192, AnyOrder: true})
		if err != nil {
			t.Fatal(err)
		}
		if st.CopyBytes+st.LiteralBytes != int64(len(target)) || st.DeltaSize != int64(d.Len()) {
			t.Fatalf("stats do not add up: %+v, target %d, delta %d", st, len(target), d.Len())
		}
		checkPatchAt(t, base, target, d.Bytes())
	})
}

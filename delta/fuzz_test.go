package delta

import (
	"bytes"
	"errors"
	"testing"
)

func fuzzSeeds() [][2][]byte {
	disk := diskLike(71, 16<<10)
	return [][2][]byte{
		{nil, nil},
		{[]byte("hello, world"), []byte("hello, there world")},
		{disk, editBytes(disk, 72, 5)},
		{disk, insert(disk, 5000, []byte("0123456789abcdefghijklmnopqrstuvwxyz"))},
		{disk, remove(disk, 3000, 700)},
		{disk, append(bytes.Clone(disk[8<<10:]), disk[:8<<10]...)},
		{make([]byte, 4096), append(make([]byte, 3000), randomBytes(73, 100)...)},
	}
}

func FuzzPatch(f *testing.F) {
	for _, s := range fuzzSeeds() {
		var d bytes.Buffer
		if _, err := Compute(bytes.NewReader(s[0]), int64(len(s[0])), bytes.NewReader(s[1]), int64(len(s[1])), &d, Options{BlockSize: 64}); err != nil {
			f.Fatal(err)
		}
		f.Add(d.Bytes(), s[0])
	}
	f.Add(build([]byte{0x45, 8, 4}, []byte{0x45, 0, 4}, []byte{0}), []byte("0123456789abcdef"))
	f.Add(build([]byte{0x44, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'a'}), []byte{})
	f.Add(build([]byte{0x54, 0, 0, 0, 1, 0, 0, 0, 0, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0}), []byte("x"))
	f.Add([]byte("rs\x026\x55"), []byte{})
	f.Fuzz(func(t *testing.T, d, base []byte) {
		var atOut, seekOut, streamOut bytes.Buffer
		atErr := PatchAt(bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), &atOut)
		seekErr := Patch(bytes.NewReader(base), bytes.NewReader(d), &seekOut)
		streamErr := Patch(streamOnly{bytes.NewReader(base)}, bytes.NewReader(d), &streamOut)
		size, sizeErr := OutputSize(bytes.NewReader(d))

		if (seekErr == nil) != (streamErr == nil) {
			t.Fatalf("Patch with Seek: %v; without: %v", seekErr, streamErr)
		}
		if seekErr == nil {
			if atErr != nil {
				t.Fatalf("Patch succeeded, PatchAt: %v", atErr)
			}
			if !bytes.Equal(seekOut.Bytes(), atOut.Bytes()) || !bytes.Equal(streamOut.Bytes(), atOut.Bytes()) {
				t.Fatal("Patch and PatchAt outputs differ")
			}
		}
		if atErr == nil {
			if sizeErr != nil || size != int64(atOut.Len()) {
				t.Fatalf("OutputSize = %d, %v; PatchAt wrote %d", size, sizeErr, atOut.Len())
			}
		}
		for _, err := range []error{atErr, seekErr, streamErr} {
			if err != nil && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrShortBase) && !errors.Is(err, ErrBackwardCopy) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
		}
		if errors.Is(atErr, ErrCorrupt) && sizeErr == nil {
			t.Fatalf("PatchAt says corrupt (%v), OutputSize does not", atErr)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s[0], s[1], uint16(i*100))
	}
	f.Fuzz(func(t *testing.T, base, target []byte, bs uint16) {
		opt := Options{BlockSize: minBlockSize + int(bs)%8192}
		st, _ := roundTrip(t, base, target, opt)
		if st.LiteralBytes > int64(len(target)) {
			t.Fatalf("more literal than target: %+v", st)
		}
	})
}

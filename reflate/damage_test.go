package reflate

import (
	"bytes"
	"errors"
	"testing"
)

// TestDamage: a changed byte of plain data or of the reconstruction data gives an error,
// never a different stream.
func TestDamage(t *testing.T) {
	defer func(a, b int) { chunkTarget, chunkMax = a, b }(chunkTarget, chunkMax)
	for _, size := range []int{1 << 20, 8 << 10} {
		chunkTarget, chunkMax = size, 2*size
		damage(t)
	}
}

func damage(t *testing.T) {
	data := inputs(t)["text"]
	comp := pyZlib(t, data, 6)
	plain, recon, _, err := Split(comp)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(plain)
	bad[len(bad)/2] ^= 1
	if _, err := Rebuild(bad, recon); err == nil {
		t.Fatal("damaged plain data rebuilt")
	}
	if _, err := Rebuild(plain[1:], recon); err == nil {
		t.Fatal("short plain data rebuilt")
	}
	for i := range recon {
		for _, x := range []byte{1, 0x80, 0xff} {
			r := bytes.Clone(recon)
			r[i] ^= x
			out, err := Rebuild(plain, r)
			if err == nil && !bytes.Equal(out, comp) {
				t.Fatalf("byte %d ^ %#x: a different stream passed", i, x)
			}
		}
	}
	if _, err := Rebuild(plain, recon[:len(recon)-1]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated reconstruction data: %v", err)
	}
}

// TestInvalidStreams: malformed deflate gives an error naming the bit offset.
func TestInvalidStreams(t *testing.T) {
	for name, src := range map[string][]byte{
		"empty":           {},
		"reserved type":   {0x07},
		"stored nlen":     {0x01, 0x05, 0x00, 0x00, 0x00},
		"truncated fixed": {0x4b},
	} {
		_, _, _, err := Split(src)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Contains([]byte(err.Error()), []byte("bit")) {
			t.Errorf("%s: error names no bit offset: %v", name, err)
		}
	}
}

// TestOldVersion: reconstruction data of version 1 (the first, in-memory format) is refused
// with an error that says what to do.
func TestOldVersion(t *testing.T) {
	_, recon, _, err := Split(pyZlib(t, []byte("hello hello hello"), 6))
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.Clone(recon)
	old[3] = 1
	_, err = Rebuild([]byte("hello hello hello"), old)
	if !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("split the stream again")) {
		t.Fatalf("version 1: %v", err)
	}
}

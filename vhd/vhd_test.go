package vhd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// qemuFixed converts raw with the real qemu-img as coreos-assembler makes Azure's image.
func qemuFixed(t testing.TB, raw []byte) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.vhd")
	if err := os.WriteFile(in, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", in, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s (Debian: apt-get install qemu-utils)", err, o)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomDisk(size int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for i := 0; i < size; i += 8192 {
		if rng.IntN(3) == 0 {
			for j := i; j < min(i+4096, size); j++ {
				b[j] = byte(rng.Uint32())
			}
		}
	}
	return b
}

func TestRoundTripQemu(t *testing.T) {
	for _, size := range []int{1 << 20, 3<<20 + 512*7} {
		raw := randomDisk(size, uint64(size))
		img := qemuFixed(t, raw)
		f, err := OpenFixed(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		if f.Size() != int64(len(img)) {
			t.Fatalf("size %d, file %d", f.Size(), len(img))
		}
		guest := make([]byte, f.DataSize)
		if _, err := f.Guest(bytes.NewReader(img)).ReadAt(guest, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(guest[:len(raw)], raw) {
			t.Fatal("guest bytes differ from the raw disk")
		}
		var out bytes.Buffer
		if err := WriteFixed(&out, bytes.NewReader(guest), f); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), img) {
			t.Fatal("WriteFixed did not reproduce qemu-img's image")
		}
		h, _ := ParseFooter(f.Footer)
		if h.DiskType != TypeFixed || h.CurrentSize != uint64(f.DataSize) {
			t.Fatalf("footer %+v", h)
		}
	}
}

// syntheticFixed makes a fixed VHD in Go (for fuzz seeds that need no tools).
func syntheticFixed(data int) []byte {
	b := make([]byte, data+FooterSize)
	copy(b, "some guest bytes")
	f := b[data:]
	copy(f, cookie)
	be := binary.BigEndian
	be.PutUint32(f[12:], 0x00010000)
	be.PutUint64(f[16:], ^uint64(0))
	be.PutUint64(f[40:], uint64(data))
	be.PutUint64(f[48:], uint64(data))
	be.PutUint32(f[60:], TypeFixed)
	be.PutUint32(f[64:], Checksum(f))
	return b
}

func TestRefusals(t *testing.T) {
	good := syntheticFixed(4096)
	if _, err := OpenFixed(bytes.NewReader(good), int64(len(good))); err != nil {
		t.Fatal(err)
	}
	mutate := func(fn func(f []byte)) []byte {
		b := bytes.Clone(good)
		fn(b[4096:])
		return b
	}
	cases := []struct {
		name string
		img  []byte
		want error
		text string
	}{
		{"no footer", good[:4096], ErrNotVHD, ""},
		{"short", good[:100], ErrNotVHD, ""},
		{"checksum", mutate(func(f []byte) { f[100] = 1 }), ErrCorrupt, "offset 0x1000"},
		{"dynamic", mutate(func(f []byte) {
			binary.BigEndian.PutUint32(f[60:], TypeDynamic)
			binary.BigEndian.PutUint32(f[64:], Checksum(f))
		}), ErrUnsupported, "disk type 3"},
		{"lying size", mutate(func(f []byte) {
			binary.BigEndian.PutUint64(f[48:], 1<<40)
			binary.BigEndian.PutUint32(f[64:], Checksum(f))
		}), ErrCorrupt, "footer says"},
	}
	for _, c := range cases {
		_, err := OpenFixed(bytes.NewReader(c.img), int64(len(c.img)))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: %v, want %v mentioning %q", c.name, err, c.want, c.text)
		}
	}
}

func TestWriteFixedChecksLength(t *testing.T) {
	img := syntheticFixed(4096)
	f, err := OpenFixed(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteFixed(&out, bytes.NewReader(img[:4000]), f); err == nil || !strings.Contains(err.Error(), "guest ends") {
		t.Fatalf("short guest: %v", err)
	}
	if err := WriteFixed(&out, bytes.NewReader(img), f); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Fatalf("long guest: %v", err)
	}
}

func FuzzOpenFixed(f *testing.F) {
	f.Add(syntheticFixed(4096))
	f.Add(syntheticFixed(0))
	f.Add([]byte("conectix"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fx, err := OpenFixed(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteFixed(&out, fx.Guest(bytes.NewReader(b)), fx); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatal("an image OpenFixed accepts is not rewritten byte for byte")
		}
	})
}

package x86filter

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// machineCode is real x86 code from this machine's binaries, where the filter has work to do.
func machineCode(t testing.TB, n int) []byte {
	t.Helper()
	var out []byte
	for _, p := range []string{"/usr/bin/bash", "/usr/bin/tar", "/usr/bin/xorriso", "/usr/bin/qemu-img", "/usr/bin/ls"} {
		b, err := os.ReadFile(p)
		if err == nil {
			out = append(out, b...)
		}
		if len(out) >= n {
			break
		}
	}
	if len(out) < 1<<20 {
		t.Fatalf("found only %d bytes of binaries", len(out))
	}
	return out[:min(n, len(out))]
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	random := make([]byte, 3*BlockSize+12345)
	for i := range random {
		random[i] = byte(r.Uint32())
		if r.IntN(20) == 0 {
			random[i] = 0xE8 // many candidates, and many near each other
		}
	}
	code := machineCode(t, 5*BlockSize+777)
	for name, orig := range map[string][]byte{"random": random, "code": code, "short": {0xE8, 1, 2, 3, 0}, "empty": nil} {
		enc := bytes.Clone(orig)
		Encode(enc, 0)
		if len(orig) > BlockSize && bytes.Equal(enc, orig) {
			t.Errorf("%s: encoding changed nothing", name)
		}
		dec := bytes.Clone(enc)
		Decode(dec, 0)
		if !bytes.Equal(dec, orig) {
			t.Fatalf("%s: Decode(Encode(x)) != x", name)
		}
		// The streaming encoder and decoder agree with the in-place functions.
		se, _ := io.ReadAll(NewEncoder(bytes.NewReader(orig)))
		if !bytes.Equal(se, enc) {
			t.Fatalf("%s: NewEncoder differs from Encode", name)
		}
		sd, _ := io.ReadAll(NewReader(iotestHalf(bytes.NewReader(enc))))
		if !bytes.Equal(sd, orig) {
			t.Fatalf("%s: NewReader does not give back the original", name)
		}
		// Random access.
		ra := NewReaderAt(bytes.NewReader(enc), int64(len(enc)))
		for range 200 {
			if len(orig) == 0 {
				break
			}
			off := r.IntN(len(orig))
			n := min(r.IntN(3*BlockSize), len(orig)-off)
			got := make([]byte, n)
			if _, err := ra.ReadAt(got, int64(off)); err != nil && !(err == io.EOF && off+n == len(orig)) {
				t.Fatalf("%s: ReadAt(%d, %d): %v", name, off, n, err)
			}
			if !bytes.Equal(got, orig[off:off+n]) {
				t.Fatalf("%s: ReadAt(%d, %d) differs", name, off, n)
			}
		}
	}
}

// iotestHalf returns a reader that returns at most half of each request, to exercise
// short reads.
func iotestHalf(r io.Reader) io.Reader { return halfReader{r} }

type halfReader struct{ r io.Reader }

func (h halfReader) Read(p []byte) (int, error) { return h.r.Read(p[:(len(p)+1)/2]) }

func TestReaderAtShortFile(t *testing.T) {
	ra := NewReaderAt(bytes.NewReader([]byte{1, 2, 3}), 10) // says 10, holds 3
	if _, err := ra.ReadAt(make([]byte, 5), 0); err == nil {
		t.Fatal("a file shorter than its size read without error")
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0xE8, 0, 0, 0, 0, 0xE9, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xE8, 0xE8, 0xE8, 0, 0, 0, 0, 0xFF, 0xE8, 1, 2, 3, 0xFF, 0xFF})
	f.Add(bytes.Repeat([]byte{0xE8, 0x00}, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, off := range []int64{0, BlockSize, 123 * BlockSize} {
			enc := bytes.Clone(data)
			Encode(enc, off)
			Decode(enc, off)
			if !bytes.Equal(enc, data) {
				t.Fatalf("Decode(Encode(x)) != x at offset %d", off)
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	code := machineCode(b, 16*BlockSize)
	Encode(code, 0)
	b.SetBytes(int64(len(code)))
	for b.Loop() {
		Decode(code, 0)
		Encode(code, 0)
	}
}

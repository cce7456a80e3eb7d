package reflate

import (
	"bytes"
	"compress/flate"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// seeds are small deflate streams from several producers (testdata holds zlib and gzip ones).
func seeds(t testing.TB) [][]byte {
	files, _ := filepath.Glob("testdata/*.deflate")
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	for _, l := range []int{0, 1, 6, 9} {
		c, _ := goFlate([]byte("hello hello hello, reflate reflate"), l)
		out = append(out, c)
	}
	return out
}

// FuzzSplit: any input gives an error or a split that rebuilds the same stream.
func FuzzSplit(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		plain, recon, n, err := Split(src)
		if err != nil {
			return
		}
		out, err := Rebuild(plain, recon)
		if err != nil {
			t.Fatalf("rebuild of a fresh split: %v", err)
		}
		if !bytes.Equal(out, src[:n]) {
			t.Fatal("rebuilt stream differs")
		}
	})
}

// FuzzRebuild: damaged reconstruction data or plain data gives an error, never a panic, and a
// stream it does return decodes to the plain data.
func FuzzRebuild(f *testing.F) {
	for _, s := range seeds(f) {
		plain, recon, _, err := Split(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(plain, recon)
		if len(recon) > 12 {
			damaged := bytes.Clone(recon)
			damaged[len(damaged)-3] ^= 0x40
			f.Add(plain, damaged)
		}
		if len(plain) > 0 {
			f.Add(plain[1:], recon)
		}
	}
	f.Fuzz(func(t *testing.T, plain, recon []byte) {
		out, err := Rebuild(plain, recon)
		if err != nil {
			return
		}
		got, err := io.ReadAll(flate.NewReader(bytes.NewReader(out)))
		if err != nil {
			t.Fatalf("rebuilt stream does not decode: %v", err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatal("rebuilt stream decodes to other data")
		}
	})
}

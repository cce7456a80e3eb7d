package reflate

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
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

// gzipSeeds are small gzip files: Go's, one around a testdata stream, two members, trailing
// bytes, and a zlib stream.
func gzipSeeds(t testing.TB) [][]byte {
	var out [][]byte
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Name, w.Comment, w.Extra = "n", "c", []byte{1, 2}
	w.Write([]byte("hello hello hello, reflate reflate"))
	w.Close()
	out = append(out, bytes.Clone(b.Bytes()), append(bytes.Clone(b.Bytes()), b.Bytes()...), append(bytes.Clone(b.Bytes()), 0, 0, 0))
	for _, s := range seeds(t)[:2] {
		data, err := io.ReadAll(flate.NewReader(bytes.NewReader(s)))
		if err != nil {
			t.Fatal(err)
		}
		m := append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, s...)
		m = binary.LittleEndian.AppendUint32(m, crc32.ChecksumIEEE(data))
		out = append(out, binary.LittleEndian.AppendUint32(m, uint32(len(data))))
	}
	b.Reset()
	zw := zlib.NewWriter(&b)
	zw.Write([]byte("zlib zlib zlib"))
	zw.Close()
	return append(out, b.Bytes())
}

// FuzzSplitGzip: any input gives an error or a split that rebuilds the same file.
func FuzzSplitGzip(f *testing.F) {
	for _, s := range gzipSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		for _, split := range []func(io.Reader, io.Writer) ([]byte, int64, error){SplitGzip, SplitZlib} {
			var plain bytes.Buffer
			recon, n, err := split(bytes.NewReader(src), &plain)
			if err != nil {
				continue
			}
			var out bytes.Buffer
			if err := RebuildGzip(&out, &plain, recon); err != nil {
				t.Fatalf("rebuild of a fresh split: %v", err)
			}
			if !bytes.Equal(out.Bytes(), src[:n]) {
				t.Fatal("rebuilt file differs")
			}
		}
	})
}

// FuzzRebuildGzip: damaged reconstruction or plain data gives an error, never a panic, and a
// file it rebuilds without error splits back to the same plain data.
func FuzzRebuildGzip(f *testing.F) {
	for _, s := range gzipSeeds(f) {
		split := SplitGzip
		if s[0] != 0x1f {
			split = SplitZlib
		}
		var plain bytes.Buffer
		recon, _, err := split(bytes.NewReader(s), &plain)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(plain.Bytes(), recon)
		damaged := bytes.Clone(recon)
		damaged[len(damaged)/2] ^= 0x10
		f.Add(plain.Bytes(), damaged)
	}
	f.Fuzz(func(t *testing.T, plain, recon []byte) {
		var out bytes.Buffer
		if err := RebuildGzip(&out, bytes.NewReader(plain), recon); err != nil {
			return
		}
		split := SplitGzip
		if len(recon) > 4 && recon[4] == kindZlib {
			split = SplitZlib
		}
		var back bytes.Buffer
		if _, _, err := split(bytes.NewReader(out.Bytes()), &back); err != nil {
			t.Fatalf("rebuilt file does not split: %v", err)
		}
		if !bytes.HasPrefix(plain, back.Bytes()) {
			t.Fatal("rebuilt file holds other data")
		}
	})
}

package qcow2

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// benchImage converts a generated raw disk of size bytes, about half of it
// data in 1 MiB islands, and returns the qcow2 path.
func benchImage(b *testing.B, size int64, compressible bool, args ...string) string {
	b.Helper()
	dir := b.TempDir()
	var spans []span
	for off := int64(0); off < size; off += 2 * mib {
		spans = append(spans, span{off, mib})
	}
	raw := filepath.Join(dir, "bench.raw")
	writeRaw(b, raw, rawDisk{name: "bench", size: size, spans: spans, compressible: compressible}, true)
	q := filepath.Join(dir, "bench.qcow2")
	convertRaw(b, raw, q, args)
	return q
}

func benchGuestRead(b *testing.B, q string) {
	img := openImage(b, q)
	b.SetBytes(img.Size())
	b.ResetTimer()
	for range b.N {
		if _, err := io.Copy(io.Discard, NewGuestReader(img)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGuestRead reads the whole guest view of a 256 MiB image (half
// data, half holes) sequentially.
func BenchmarkGuestRead(b *testing.B) {
	benchGuestRead(b, benchImage(b, 256*mib, false))
}

// BenchmarkGuestReadAt32K reads the same image with 32 KiB ReadAt calls.
func BenchmarkGuestReadAt32K(b *testing.B) {
	img := openImage(b, benchImage(b, 256*mib, false))
	b.SetBytes(img.Size())
	p := make([]byte, 32*kib)
	b.ResetTimer()
	for range b.N {
		for off := int64(0); off < img.Size(); off += int64(len(p)) {
			if _, err := img.ReadAt(p, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkGuestReadCompressed reads a 64 MiB zlib-compressed image.
func BenchmarkGuestReadCompressed(b *testing.B) {
	benchGuestRead(b, benchImage(b, 64*mib, true, "-c"))
}

// BenchmarkEncode writes a 256 MiB image from its Layout and guest view.
func BenchmarkEncode(b *testing.B) {
	q := benchImage(b, 256*mib, false)
	img := openImage(b, q)
	l, err := img.Layout()
	if err != nil {
		b.Fatal(err)
	}
	fi, err := os.Stat(q)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	b.ResetTimer()
	for range b.N {
		if err := Encode(io.Discard, NewGuestReader(img), l); err != nil {
			b.Fatal(err)
		}
	}
}

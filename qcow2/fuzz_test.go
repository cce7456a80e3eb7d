package qcow2

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeedImages makes tiny real images (512-byte clusters, an 8 KiB disk)
// with qemu-img and qemu-io: plain, compressed, version 2, 1-bit refcounts,
// and one with zero clusters. Each is a few KiB: the fuzzer minimizes
// interesting inputs, which is slow for large ones.
func fuzzSeedImages(f *testing.F) [][]byte {
	dir := f.TempDir()
	raw := filepath.Join(dir, "seed.raw")
	writeRaw(f, raw, rawDisk{name: "seed", size: 8 * kib, spans: []span{{0, 1500}, {3*kib + 7, 1000}, {7 * kib, 512}}, compressible: true}, true)
	var seeds [][]byte
	for i, args := range [][]string{
		{"-o", "cluster_size=512"},
		{"-c", "-o", "cluster_size=512"},
		{"-o", "compat=0.10,cluster_size=512"},
		{"-o", "cluster_size=512,refcount_bits=1"},
	} {
		q := filepath.Join(dir, "seed"+string(rune('a'+i))+".qcow2")
		convertRaw(f, raw, q, args)
		seeds = append(seeds, readFile(f, q))
	}
	q := filepath.Join(dir, "zero.qcow2")
	run(f, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", q, "8k")
	run(f, "qemu-io", "-f", "qcow2", "-c", "write -P 5 0 2k", "-c", "write -z 512 1k", "-c", "write -z 4k 1k", q)
	return append(seeds, readFile(f, q))
}

func readFile(t testing.TB, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzOpen opens arbitrary bytes and reads the guest view: never a panic or
// a huge allocation. When Layout accepts the image, Encode must give back
// the very same bytes.
func FuzzOpen(f *testing.F) {
	for _, s := range fuzzSeedImages(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(NewGuestReader(img), 1<<20))
		_, _ = img.Extents()
		l, err := img.Layout()
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := Encode(&buf, NewGuestReader(img), l); err != nil {
			t.Fatalf("Encode(Layout()): %v", err)
		}
		if !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("Encode(Layout()) does not reproduce the input")
		}
	})
}

// FuzzLayoutEncode feeds arbitrary Layout JSON to Encode: never a panic;
// what Encode writes and Open accepts has a Layout that reproduces it.
func FuzzLayoutEncode(f *testing.F) {
	for _, s := range fuzzSeedImages(f) {
		img, err := Open(bytes.NewReader(s), int64(len(s)))
		if err != nil {
			f.Fatal(err)
		}
		if l, err := img.Layout(); err == nil {
			b, _ := json.Marshal(l)
			f.Add(b)
		}
	}
	if l, err := PlanConvert(bytes.NewReader(bytes.Repeat([]byte{1}, 70000)), 70000, &ConvertOptions{ClusterSize: 4096}); err == nil {
		b, _ := json.Marshal(l)
		f.Add(b)
	} else {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var l Layout
		if json.Unmarshal(data, &l) != nil || l.FileSize > 4<<20 || l.Header.Size > 64<<20 {
			return
		}
		var buf bytes.Buffer
		if err := Encode(&buf, io.LimitReader(zeroReader{}, int64(l.Header.Size)), &l); err != nil {
			return
		}
		if int64(buf.Len()) != l.FileSize {
			t.Fatalf("Encode wrote %d bytes, layout says %d", buf.Len(), l.FileSize)
		}
		img, err := Open(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			return
		}
		l2, err := img.Layout()
		if err != nil {
			t.Fatalf("Layout of an encoded file: %v", err)
		}
		var buf2 bytes.Buffer
		if err := Encode(&buf2, NewGuestReader(img), l2); err != nil || !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
			t.Fatalf("re-encoding differs (%v)", err)
		}
	})
}

package qcow2

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type convertVariant struct {
	name string
	args []string
}

var readVariants = []convertVariant{
	{"default", nil},
	{"compressed", []string{"-c"}},
	{"compat-0.10", []string{"-o", "compat=0.10"}},
	{"cluster-4k", []string{"-o", "cluster_size=4096"}},
	{"cluster-2m", []string{"-o", "cluster_size=2M"}},
	{"cluster-512", []string{"-o", "cluster_size=512"}},
	{"compressed-v2-4k", []string{"-c", "-o", "compat=0.10,cluster_size=4096"}},
	{"refcount-1", []string{"-o", "refcount_bits=1"}},
}

func convertRaw(t testing.TB, raw, dst string, extra []string) {
	t.Helper()
	args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, extra...)
	run(t, "qemu-img", append(args, raw, dst)...)
}

// TestReadConvertedImages: the guest view of images written by qemu-img
// convert equals the raw source byte for byte.
func TestReadConvertedImages(t *testing.T) {
	dir := t.TempDir()
	for _, d := range testDisks() {
		raw := filepath.Join(dir, d.name+".raw")
		writeRaw(t, raw, d, true)
		vsize := (d.size + 511) &^ 511
		want := rawGuestSHA(t, raw, vsize)
		rawBytes, err := os.ReadFile(raw)
		if err != nil {
			t.Fatal(err)
		}
		rawBytes = append(rawBytes, make([]byte, vsize-d.size)...)
		for _, v := range readVariants {
			t.Run(d.name+"/"+v.name, func(t *testing.T) {
				q := filepath.Join(dir, d.name+"-"+v.name+".qcow2")
				convertRaw(t, raw, q, v.args)
				img := openImage(t, q)
				if img.Size() != vsize {
					t.Fatalf("Size = %d, want %d", img.Size(), vsize)
				}
				if got := readerSHA(t, NewGuestReader(img)); got != want {
					t.Fatalf("guest view sha256 %s, raw %s", got, want)
				}
				checkRandomReads(t, img, rawBytes)
				checkExtents(t, img, q, rawBytes)
			})
		}
	}
}

func checkRandomReads(t *testing.T, img *Image, raw []byte) {
	r := rand.New(rand.NewSource(1))
	size := int64(len(raw))
	for range 200 {
		if size == 0 {
			break
		}
		off := r.Int63n(size)
		n := 1 + r.Int63n(min(size-off, 300*kib))
		p := make([]byte, n)
		got, err := img.ReadAt(p, off)
		if err != nil && !(err == io.EOF && off+n == size) {
			t.Fatalf("ReadAt(%d, %d): %v", n, off, err)
		}
		if int64(got) != n || !bytes.Equal(p, raw[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d) differs from raw", n, off)
		}
	}
	if _, err := img.ReadAt(make([]byte, 1), size); err != io.EOF {
		t.Fatalf("ReadAt at end: %v, want io.EOF", err)
	}
	if size > 0 {
		p := make([]byte, 10)
		n, err := img.ReadAt(p, size-5)
		if n != 5 || err != io.EOF {
			t.Fatalf("ReadAt across end: %d, %v", n, err)
		}
	}
}

// checkExtents compares Extents with qemu-img map and checks that the raw
// data outside them is zero.
func checkExtents(t *testing.T, img *Image, path string, raw []byte) {
	ext, err := img.Extents()
	if err != nil {
		t.Fatal(err)
	}
	var qm []struct {
		Start, Length int64
		Data, Zero    bool
	}
	if err := json.Unmarshal([]byte(run(t, "qemu-img", "map", "--output=json", path)), &qm); err != nil {
		t.Fatal(err)
	}
	var want []Extent
	for _, m := range qm {
		if !m.Data {
			continue
		}
		if k := len(want) - 1; k >= 0 && want[k].Off+want[k].Len == m.Start {
			want[k].Len += m.Length
		} else {
			want = append(want, Extent{Off: m.Start, Len: m.Length})
		}
	}
	if len(want) != len(ext) {
		t.Fatalf("Extents = %v, qemu-img map data ranges = %v", ext, want)
	}
	for i := range want {
		if want[i] != ext[i] {
			t.Fatalf("Extents = %v, qemu-img map data ranges = %v", ext, want)
		}
	}
	pos := int64(0)
	for _, e := range append(ext, Extent{Off: int64(len(raw))}) {
		if bytes.ContainsFunc(raw[pos:e.Off], func(r rune) bool { return r != 0 }) {
			t.Fatalf("non-zero raw data in [%d, %d) outside extents", pos, e.Off)
		}
		pos = e.Off + e.Len
	}
}

// TestQemuIOImage: images changed in place by qemu-io (zero clusters with
// and without allocation, discards, rewrites) read like qemu-img reads them.
func TestQemuIOImage(t *testing.T) {
	dir := t.TempDir()
	for _, compat := range []string{"1.1", "0.10"} {
		t.Run(compat, func(t *testing.T) {
			q := filepath.Join(dir, "io-"+compat+".qcow2")
			run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat="+compat+",cluster_size=65536", q, "8M")
			run(t, "qemu-io", "-f", "qcow2",
				"-c", "write -P 0x11 0 100k",
				"-c", "write -P 0x22 1M 256k",
				"-c", "write -z 1M 64k", // zero over allocated cluster
				"-c", "write -z -u 1088k 64k", // zero and unmap
				"-c", "write -z 3M 128k", // zero over unallocated
				"-c", "write -P 0x33 5M 1k",
				"-c", "discard 0 64k",
				"-c", "write -P 0x44 7M 1M",
				q)
			raw := filepath.Join(dir, "io-"+compat+".raw")
			run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", q, raw)
			img := openImage(t, q)
			if got, want := readerSHA(t, NewGuestReader(img)), fileSHA(t, raw); got != want {
				t.Fatalf("guest view sha256 %s, qemu-img says %s", got, want)
			}
			ext, err := img.Extents()
			if err != nil {
				t.Fatal(err)
			}
			zero := false
			for _, e := range ext {
				zero = zero || e.Zero
			}
			if compat == "1.1" && !zero {
				t.Errorf("no zero extents in %v", ext)
			}
		})
	}
}

// smallImage returns the bytes of a 256 KiB disk with data in its first
// 128 KiB, made by qemu-img.
func smallImage(t *testing.T, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "s.raw")
	writeRaw(t, raw, rawDisk{name: "s", size: 256 * kib, spans: []span{{0, 128 * kib}}, compressible: true}, true)
	q := filepath.Join(dir, "s.qcow2")
	convertRaw(t, raw, q, args)
	b, err := os.ReadFile(q)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(img *Image) error {
	_, err := io.Copy(io.Discard, NewGuestReader(img))
	return err
}

func TestOpenErrors(t *testing.T) {
	base := smallImage(t)
	be := binary.BigEndian
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(base)) }
	l1 := be.Uint64(base[40:])
	tests := []struct {
		name string
		data []byte
		want error
		text string
	}{
		{"empty", nil, ErrNotQcow2, ""},
		{"bad magic", mut(func(b []byte) []byte { b[0] = 'X'; return b }), ErrNotQcow2, ""},
		{"truncated header", base[:50], ErrCorrupt, ""},
		{"version 4", mut(func(b []byte) []byte { be.PutUint32(b[4:], 4); return b }), ErrUnsupported, "version 4"},
		{"cluster bits 8", mut(func(b []byte) []byte { be.PutUint32(b[20:], 8); return b }), ErrCorrupt, "cluster_bits 8"},
		{"cluster bits 22", mut(func(b []byte) []byte { be.PutUint32(b[20:], 22); return b }), ErrCorrupt, "cluster_bits 22"},
		{"encrypted", mut(func(b []byte) []byte { be.PutUint32(b[32:], 1); return b }), ErrUnsupported, "encrypted"},
		{"backing file", mut(func(b []byte) []byte {
			be.PutUint64(b[8:], 0x1000)
			be.PutUint32(b[16:], 4)
			copy(b[0x1000:], "base")
			return b
		}), ErrUnsupported, `backing file "base"`},
		{"external data file", mut(func(b []byte) []byte { b[79] |= IncompatExternalData; return b }), ErrUnsupported, "external data file"},
		{"extended L2", mut(func(b []byte) []byte { b[79] |= IncompatExtendedL2; return b }), ErrUnsupported, "extended L2"},
		{"unknown feature", mut(func(b []byte) []byte { b[78] |= 1; return b }), ErrUnsupported, "unknown incompatible"},
		{"header length", mut(func(b []byte) []byte { be.PutUint32(b[100:], 50); return b }), ErrCorrupt, "header_length"},
		{"refcount order", mut(func(b []byte) []byte { be.PutUint32(b[96:], 7); return b }), ErrCorrupt, "refcount_order"},
		{"L1 too small", mut(func(b []byte) []byte { be.PutUint64(b[24:], 1<<40); return b }), ErrCorrupt, "L1 table has"},
		{"absurd size", mut(func(b []byte) []byte { be.PutUint64(b[24:], 1<<62); return b }), ErrCorrupt, "absurd"},
		{"absurd L1 size", mut(func(b []byte) []byte { be.PutUint32(b[36:], 1<<30); return b }), ErrCorrupt, "absurd"},
		{"L1 misaligned", mut(func(b []byte) []byte { be.PutUint64(b[40:], l1+8); return b }), ErrCorrupt, "not aligned"},
		{"L1 past end", mut(func(b []byte) []byte { be.PutUint64(b[40:], 1<<40); return b }), ErrCorrupt, "past end of file"},
		{"shared L2 table", func() []byte {
			b := bigger(base)
			copy(b[l1+8:], b[l1:l1+8])
			return b
		}(), ErrCorrupt, "used by two L1 entries"},
		{"extension too long", mut(func(b []byte) []byte { be.PutUint32(b[116:], 1<<20); return b }), ErrCorrupt, "runs past"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(bytes.NewReader(tc.data), int64(len(tc.data)))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Open: %v, want %v containing %q", err, tc.want, tc.text)
			}
		})
	}
}

// bigger returns a copy of a smallImage whose virtual size is 2 GiB, so that
// its L1 table has more than one entry.
func bigger(b []byte) []byte {
	b = bytes.Clone(b)
	binary.BigEndian.PutUint64(b[24:], 2<<30)
	binary.BigEndian.PutUint32(b[36:], 4)
	return b
}

func TestReadErrors(t *testing.T) {
	base := smallImage(t)
	be := binary.BigEndian
	l1 := be.Uint64(base[40:])
	l2 := be.Uint64(base[l1:]) & offsetMask
	compressed := smallImage(t, "-c")
	cl1 := be.Uint64(compressed[40:])
	cl2 := be.Uint64(compressed[cl1:]) & offsetMask
	v2 := smallImage(t, "-o", "compat=0.10")
	v2l1 := be.Uint64(v2[40:])
	v2l2 := be.Uint64(v2[v2l1:]) & offsetMask
	mut := func(src []byte, f func(b []byte)) []byte { b := bytes.Clone(src); f(b); return b }
	tests := []struct {
		name string
		data []byte
		want error
		text string
	}{
		{"L2 table past end", mut(base, func(b []byte) { be.PutUint64(b[l1:], 1<<40|flagCopied) }), ErrCorrupt, "L2 table offset 0x10000000000 points past end of file"},
		{"L2 table misaligned", mut(base, func(b []byte) { be.PutUint64(b[l1:], (l2+512)|flagCopied) }), ErrCorrupt, "not aligned"},
		{"data past end", mut(base, func(b []byte) { be.PutUint64(b[l2:], 1<<40|flagCopied) }), ErrCorrupt, "entry points past end of file"},
		{"data misaligned", mut(base, func(b []byte) { be.PutUint64(b[l2:], 0x40200|flagCopied) }), ErrCorrupt, "not aligned"},
		{"compressed garbage", mut(compressed, func(b []byte) {
			off := be.Uint64(b[cl2:]) & (1<<(62-8) - 1)
			copy(b[off:], bytes.Repeat([]byte{0xff}, 64))
		}), ErrCorrupt, "compressed cluster"},
		{"compressed past end", mut(compressed, func(b []byte) { be.PutUint64(b[cl2:], flagCompressed|1<<40) }), ErrCorrupt, "past end of file"},
		{"zero flag in v2", mut(v2, func(b []byte) { be.PutUint64(b[v2l2:], 1) }), ErrCorrupt, "version 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := Open(bytes.NewReader(tc.data), int64(len(tc.data)))
			if err != nil {
				t.Fatal(err)
			}
			err = readAll(img)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("read: %v, want %v containing %q", err, tc.want, tc.text)
			}
			if _, err := img.Extents(); err == nil && tc.want == ErrCorrupt && !strings.Contains(tc.name, "compressed garbage") {
				t.Fatalf("Extents accepted the corruption")
			}
		})
	}
}

func TestZstdCompressed(t *testing.T) {
	b := smallImage(t, "-c", "-o", "compression_type=zstd")
	img, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := readAll(img); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "zstd") {
		t.Fatalf("read: %v, want ErrUnsupported about zstd", err)
	}
}

// TestConcurrentReadAt reads a compressed 4 KiB-cluster image from several
// goroutines with an L2 cache of two tables, so that tables are evicted and
// reloaded and the decompressed-cluster cache is contended.
func TestConcurrentReadAt(t *testing.T) {
	dir := t.TempDir()
	d := rawDisk{name: "c", size: 12 * mib, spans: []span{{0, 3 * mib}, {5 * mib, 4 * mib}}, compressible: true}
	raw := filepath.Join(dir, "c.raw")
	writeRaw(t, raw, d, true)
	q := filepath.Join(dir, "c.qcow2")
	convertRaw(t, raw, q, []string{"-c", "-o", "cluster_size=4096"})
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	img := openImage(t, q)
	img.maxL2 = 2
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			r := rand.New(rand.NewSource(int64(g)))
			for range 300 {
				off := r.Int63n(d.size)
				n := 1 + r.Int63n(min(d.size-off, 64*kib))
				p := make([]byte, n)
				if _, err := img.ReadAt(p, off); err != nil && err != io.EOF {
					errs <- err
					return
				}
				if !bytes.Equal(p, want[off:off+n]) {
					errs <- errors.New("ReadAt differs from raw")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

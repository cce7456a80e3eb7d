package qcow2

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// Tests use qemu-img (and qemu-io) as the reference. CI installs qemu-utils;
// a missing tool is a failure, not a skip.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (install qemu-utils): %v", name, err)
	}
	return p
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	requireTool(t, name)
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// span is a guest range filled with random bytes.
type span struct{ off, n int64 }

// rawDisk describes a generated raw disk: size bytes, zero except for the
// spans, which hold random bytes; zeroed lists sub-ranges cleared again
// (zero gaps inside data).
type rawDisk struct {
	name   string
	size   int64
	spans  []span
	zeroed []span
	// compressible fills spans from a four-letter alphabet instead.
	compressible bool
}

const (
	kib = 1 << 10
	mib = 1 << 20
)

func testDisks() []rawDisk {
	return []rawDisk{
		{name: "islands", size: 37*mib + 1000, spans: []span{
			{0, 1 * mib}, // partition table and boot area
			{5*mib + 3, 100},
			{64*kib - 5, 10},         // across a cluster boundary
			{10*mib + 4096, 3 * mib}, // 4 KiB aligned, not 64 KiB aligned
			{20*mib - 512, 1024},
			{37*mib + 300, 700}, // last, partial cluster
		}, zeroed: []span{
			{10*mib + 4096 + 100*kib, 8 * kib}, // zero gap >= 4 KiB inside data
			{10*mib + 4096 + 300*kib, 2 * kib}, // zero gap < 4 KiB
			{10*mib + 4096 + 1*mib, 64 * kib},  // one whole cluster, unaligned
			{10*mib + 4096 + 2*mib - 4096, 128 * kib},
		}},
		{name: "dense", size: 12 * mib, spans: []span{{0, 12 * mib}}, zeroed: []span{{3 * mib, 200 * kib}}},
		{name: "scattered", size: 9*mib + 512*3, spans: scattered(9*mib, 300*kib, 9000)},
		{name: "text", size: 6*mib + 512, spans: []span{{0, 2 * mib}, {4*mib + 512, 1 * mib}}, compressible: true},
		{name: "empty", size: 5 * mib},
		{name: "tiny", size: 1000, spans: []span{{10, 20}}},
		{name: "zero-size", size: 0},
	}
}

func scattered(size, step, maxLen int64) []span {
	r := rand.New(rand.NewSource(7))
	var s []span
	for off := int64(0); off < size; off += step {
		s = append(s, span{off + r.Int63n(step/2), 1 + r.Int63n(maxLen)})
	}
	return s
}

// writeRaw creates the disk at path. Sparse leaves holes where the disk is
// zero; otherwise every byte is written.
func writeRaw(t testing.TB, path string, d rawDisk, sparse bool) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(d.size); err != nil {
		t.Fatal(err)
	}
	if !sparse {
		buf := make([]byte, mib)
		for off := int64(0); off < d.size; off += mib {
			if _, err := f.WriteAt(buf[:min(mib, d.size-off)], off); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := rand.New(rand.NewSource(int64(len(d.name)) + d.size))
	for _, s := range d.spans {
		b := make([]byte, s.n)
		r.Read(b)
		if d.compressible {
			for i := range b {
				b[i] = 'a' + b[i]&3
			}
		}
		if _, err := f.WriteAt(b, s.off); err != nil {
			t.Fatal(err)
		}
	}
	for _, z := range d.zeroed {
		if _, err := f.WriteAt(make([]byte, z.n), z.off); err != nil {
			t.Fatal(err)
		}
	}
}

func fileSHA(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readerSHA(t, f)
}

func readerSHA(t testing.TB, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// rawGuestSHA is the SHA-256 of the raw file padded with zeros to size.
func rawGuestSHA(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	return readerSHA(t, io.MultiReader(f, io.LimitReader(zeroReader{}, size-fi.Size())))
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func openImage(t testing.TB, path string) *Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	img, err := Open(f, fi.Size())
	if err != nil {
		t.Fatalf("Open %s: %v", filepath.Base(path), err)
	}
	return img
}

// sourceData lists the data regions of f as lseek(SEEK_DATA/SEEK_HOLE) sees them.
func sourceData(t testing.TB, path string) []Extent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	const seekData, seekHole = 3, 4
	out := []Extent{}
	for off := int64(0); off < fi.Size(); {
		d, err := syscall.Seek(int(f.Fd()), off, seekData)
		if err == syscall.ENXIO {
			break
		}
		if err != nil {
			t.Fatalf("SEEK_DATA: %v", err)
		}
		h, err := syscall.Seek(int(f.Fd()), d, seekHole)
		if err != nil {
			t.Fatalf("SEEK_HOLE: %v", err)
		}
		out = append(out, Extent{Off: d, Len: h - d})
		off = h
	}
	return out
}

// clusterSpans turns inclusive ranges of 4 KiB clusters into spans.
func clusterSpans(ranges ...[2]int64) []span {
	var s []span
	for _, r := range ranges {
		s = append(s, span{r[0] * 4096, (r[1] - r[0] + 1) * 4096})
	}
	return s
}

// boundaryDisks put allocations of a 4 KiB-cluster image exactly at the
// first cluster the second refcount block covers (host cluster 2048).
func boundaryDisks() []rawDisk {
	return []rawDisk{
		{name: "rb-l2-at-boundary", size: 3000 * 4096, spans: clusterSpans([2]int64{0, 510}, [2]int64{512, 1023}, [2]int64{1024, 1535}, [2]int64{1536, 2040}, [2]int64{2048, 2100})},
		{name: "rb-data-at-boundary", size: 3000 * 4096, spans: clusterSpans([2]int64{0, 510}, [2]int64{512, 1023}, [2]int64{1024, 1535}, [2]int64{1536, 2039}, [2]int64{2048, 2100})},
		{name: "rb-crossing", size: 20*mib + 4096*3 + 100, spans: []span{{0, 20*mib + 4096*3 + 100}}, zeroed: []span{{9 * mib, 100 * kib}}},
	}
}

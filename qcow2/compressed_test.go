package qcow2

import (
	"bytes"
	"compress/flate"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// mixedRaw writes a disk of text (compresses), random (does not: qemu then
// stores the cluster plain) and zero (unallocated) stretches, of an odd size.
func mixedRaw(t testing.TB, path string, size int64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(size), 9))
	b := make([]byte, size)
	for off := int64(0); off < size; {
		n := min(size-off, int64(rng.IntN(300*kib)+1))
		switch rng.IntN(3) {
		case 0:
			for i := off; i < off+n; i++ {
				b[i] = "nutanix "[i%8] + byte(rng.IntN(2))
			}
		case 1:
			for i := off; i < off+n; i++ {
				b[i] = byte(rng.Uint32())
			}
		}
		off += n
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCompressedNutanix: images made as osbuild makes nutanix's
// (qemu-img convert -O qcow2 -c -o compat=1.1) read as qemu-img convert -O
// raw reads them, and their compressed clusters are measured exactly.
func TestCompressedNutanix(t *testing.T) {
	dir := t.TempDir()
	for i, opts := range [][]string{
		{"-c", "-o", "compat=1.1"},
		{"-c", "-o", "compat=1.1,cluster_size=4096"},
		{"-c", "-o", "compat=0.10,cluster_size=2M"},
	} {
		raw := filepath.Join(dir, "disk.raw")
		mixedRaw(t, raw, 9*mib+512*5+int64(i)*kib)
		q := filepath.Join(dir, "disk.qcow2")
		os.Remove(q)
		convertRaw(t, raw, q, opts)
		back := filepath.Join(dir, "back.raw")
		run(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", q, back)
		img := openImage(t, q)
		if got, want := readerSHA(t, NewGuestReader(img)), fileSHA(t, back); got != want {
			t.Fatalf("%v: guest view differs from qemu-img convert -O raw", opts)
		}
		cs, err := img.CompressedClusters()
		if err != nil {
			t.Fatal(err)
		}
		if len(cs) == 0 {
			t.Fatalf("%v: no compressed clusters", opts)
		}
		f, err := os.Open(q)
		if err != nil {
			t.Fatal(err)
		}
		packed := 0
		cluster := make([]byte, img.cs)
		for k, c := range cs {
			// qemu's L2 entry counts the sectors from the stream's first byte to its last.
			if want := (c.Host+c.Len-1)>>9 - c.Host>>9 + 1; c.Sectors != want {
				t.Fatalf("cluster at guest %#x: %d sectors in L2, a %d-byte stream at %#x touches %d", c.Guest, c.Sectors, c.Len, c.Host, want)
			}
			z := flate.NewReader(io.NewSectionReader(f, c.Host, c.Len))
			got, err := io.ReadAll(z)
			if err != nil || int64(len(got)) != img.cs {
				t.Fatalf("cluster at guest %#x: stream of %d bytes inflates to %d bytes: %v", c.Guest, c.Len, len(got), err)
			}
			n, _ := img.ReadAt(cluster, c.Guest)
			if !bytes.Equal(got[:n], cluster[:n]) {
				t.Fatalf("cluster at guest %#x inflates to other bytes than the guest view", c.Guest)
			}
			if k > 0 && cs[k-1].Host+cs[k-1].Len == c.Host {
				packed++
			}
		}
		f.Close()
		ext, _ := img.Extents()
		var data int64
		for _, e := range ext {
			data += e.Len
		}
		t.Logf("%v: %d compressed clusters of %d allocated bytes, %d streams right after the previous one", opts, len(cs), data, packed)
	}
}

// FuzzCompressedClusters measures the compressed clusters of arbitrary
// bytes: never a panic; every cluster listed inflates to one cluster.
func FuzzCompressedClusters(f *testing.F) {
	for _, s := range fuzzSeedImages(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		cs, err := img.CompressedClusters()
		if err != nil {
			return
		}
		for _, c := range cs {
			got, err := io.ReadAll(flate.NewReader(img.CompressedStream(c)))
			if err != nil || int64(len(got)) != img.cs {
				t.Fatalf("cluster at guest %#x: %d-byte stream inflates to %d bytes: %v", c.Guest, c.Len, len(got), err)
			}
		}
	})
}

package reflate_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/reflate"
)

// qemuClusters makes a compressed qcow2 image of data with qemu-img convert -c (as osbuild
// makes nutanix's) and returns its compressed clusters' deflate streams and plain data.
func qemuClusters(t testing.TB, data []byte) (streams, plains [][]byte) {
	dir := t.TempDir()
	raw, q := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.qcow2")
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", "-o", "compat=1.1", raw, q).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	f, err := os.Open(q)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	img, err := qcow2.Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := img.CompressedClusters()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		s, err := io.ReadAll(img.CompressedStream(c))
		if err != nil {
			t.Fatal(err)
		}
		end := min(int64(len(data)), c.Guest+64<<10)
		p := make([]byte, 64<<10)
		copy(p, data[c.Guest:end])
		streams, plains = append(streams, s), append(plains, p)
	}
	return streams, plains
}

// TestQemuClusters: the compressed clusters qemu-img writes (zlib level 6, windowBits -12,
// memLevel 9) are split and rebuilt bit for bit for at most 0.5% of their size.
func TestQemuClusters(t *testing.T) {
	var data []byte
	for _, f := range []string{"/usr/share/common-licenses/GPL-3", "/usr/bin/gzip", "/usr/share/common-licenses/Apache-2.0", "/usr/bin/qemu-img"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b...)
	}
	data = data[:min(len(data), 3<<20)]
	streams, plains := qemuClusters(t, data)
	if len(streams) < 10 {
		t.Fatalf("only %d compressed clusters", len(streams))
	}
	var comp, rec int
	for i, s := range streams {
		plain, recon, n, err := reflate.Split(s)
		if err != nil || n != len(s) || !bytes.Equal(plain, plains[i]) {
			t.Fatalf("cluster %d: n %d of %d: %v", i, n, len(s), err)
		}
		out, err := reflate.Rebuild(plain, recon)
		if err != nil || !bytes.Equal(out, s) {
			t.Fatalf("cluster %d: rebuild: %v", i, err)
		}
		comp += len(s)
		rec += len(recon)
	}
	t.Logf("qemu-img convert -c: %d clusters, %d bytes of deflate, recon %d bytes (%.3f%%)", len(streams), comp, rec, 100*float64(rec)/float64(comp))
	if float64(rec) > 0.005*float64(comp) {
		t.Errorf("recon %.3f%% of the clusters' size", 100*float64(rec)/float64(comp))
	}
}

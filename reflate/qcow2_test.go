package reflate_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

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

// BenchmarkQemuClusters: the compressed clusters of a qcow2 image qemu-img convert -c makes
// of 16 MiB of executables and text: reconstruction data over the clusters' size (recon-%),
// and the time to split and to rebuild every cluster one after another.
//
//	go test -run '^$' -bench QemuClusters -benchtime 1x ./reflate
func BenchmarkQemuClusters(b *testing.B) {
	var data []byte
	for _, f := range []string{"/usr/bin/qemu-img", "/usr/share/common-licenses/GPL-3", "/usr/bin/skopeo"} {
		d, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		data = append(data, d...)
	}
	data = data[:min(len(data), 16<<20)]
	streams, plains := qemuClusters(b, data)
	for i := 0; i < b.N; i++ {
		var comp, rec int
		var splitT, rebuildT time.Duration
		for k, s := range streams {
			start := time.Now()
			plain, recon, _, err := reflate.Split(s)
			splitT += time.Since(start)
			if err != nil || !bytes.Equal(plain, plains[k]) {
				b.Fatal(err)
			}
			start = time.Now()
			out, err := reflate.Rebuild(plain, recon)
			rebuildT += time.Since(start)
			if err != nil || !bytes.Equal(out, s) {
				b.Fatal(err)
			}
			comp += len(s)
			rec += len(recon)
		}
		b.ReportMetric(float64(len(streams)), "clusters")
		b.ReportMetric(float64(comp), "deflate-bytes")
		b.ReportMetric(float64(rec), "recon-bytes")
		b.ReportMetric(100*float64(rec)/float64(comp), "recon-%")
		b.ReportMetric(float64(splitT.Milliseconds()), "split-ms")
		b.ReportMetric(float64(rebuildT.Milliseconds()), "rebuild-ms")
	}
}

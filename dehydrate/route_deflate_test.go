package dehydrate

import (
	"context"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The three shapes of deflate the real release ships with sha256 only, made by the real tools
// from the baseline's guest with another platform stamped in: gcp's gzip -9 of an oldgnu
// sparse tar, kubevirt's tar holding a gzip layer of a tar of a qcow2, nutanix's qemu-img
// convert -c. Each is unwrapped and planned from the baseline at a small fraction of its
// size, and comes out bit for bit (Dehydrate's self-check).
func TestDehydrateDeflated(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewSource(11))
	raw := make([]byte, 24<<20)
	rng.Read(raw[:1<<20])
	for off := 3 << 20; off < 5<<20; off += 4096 {
		copy(raw[off:], strings.Repeat("console=ttyS0,115200n8 root=UUID=1234 rw ", 1+off%97))
	}
	rng.Read(raw[9<<20 : 9<<20+300000])
	stamp := func(p string) []byte {
		b := append([]byte(nil), raw...)
		copy(b[1<<20+4096:], "options root=UUID=x ignition.platform.id="+p+"\n")
		return b
	}
	write := func(p string, b []byte) string {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := write(filepath.Join(work, "base.raw"), stamp("qemu"))
	qcow := filepath.Join(dir, "f-qemu.x86_64.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", base, qcow)
	usum := fileSum(t, qcow)
	run(t, "xz", "-1", "-T2", qcow)

	// gcp: tar --format=oldgnu --sparse of disk.raw, gzip -9 -n.
	gdir := filepath.Join(work, "gcp")
	os.MkdirAll(gdir, 0o755)
	write(filepath.Join(gdir, "disk.raw"), stamp("gcp"))
	run(t, "tar", "--format=oldgnu", "--sparse", "-cf", filepath.Join(work, "gcp.tar"), "-C", gdir, "disk.raw")
	run(t, "gzip", "-9", "-n", filepath.Join(work, "gcp.tar"))
	gcp := filepath.Join(dir, "f-gcp.x86_64.tar.gz")
	os.Rename(filepath.Join(work, "gcp.tar.gz"), gcp)

	// kubevirt: the qcow2 in a posix tar, gzip (name and time in its header), in a posix tar.
	kdir := filepath.Join(work, "kubevirt")
	os.MkdirAll(filepath.Join(kdir, "disk"), 0o755)
	kraw := write(filepath.Join(work, "kubevirt.raw"), stamp("kubevirt"))
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1", kraw, filepath.Join(kdir, "disk", "f-kubevirt.qcow2"))
	odir := filepath.Join(work, "oci")
	os.MkdirAll(filepath.Join(odir, "blobs", "sha256"), 0o755)
	layer := filepath.Join(odir, "blobs", "sha256", "layer")
	run(t, "tar", "--sort=name", "--format=posix", "--pax-option", "delete=atime,delete=ctime", "-cf", layer, "-C", kdir, "disk")
	run(t, "gzip", "-S", ".gz", layer)
	write(filepath.Join(odir, "index.json"), []byte(`{"schemaVersion": 2, "manifests": []}`))
	kv := filepath.Join(dir, "f-kubevirt.x86_64.ociarchive")
	run(t, "tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--format=posix", "--mtime=@1700000000",
		"--pax-option", "delete=atime,delete=ctime", "-cf", kv, "-C", odir, "blobs", "index.json")

	// nutanix: qemu-img convert -c.
	nraw := write(filepath.Join(work, "nutanix.raw"), stamp("nutanix"))
	nq := filepath.Join(dir, "f-nutanix.x86_64.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", "-o", "compat=1.1", nraw, nq)

	// hyperv, had the stream only the archive's sha256: a dynamic VHDX in zip -9j.
	hraw := write(filepath.Join(work, "hyperv.raw"), stamp("hyperv"))
	hv := filepath.Join(work, "f-hyperv.x86_64.vhdx")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "subformat=dynamic", hraw, hv)
	run(t, "zip", "-9j", "-q", filepath.Join(dir, "f-hyperv.x86_64.vhdx.zip"), hv)

	disk := func(format, file, usha string) map[string]any {
		d := map[string]string{"location": "https://example.com/b/" + file, "sha256": fileSum(t, filepath.Join(dir, file))}
		if usha != "" {
			d["uncompressed-sha256"] = usha
		}
		return map[string]any{"release": "1", "formats": map[string]any{format: map[string]any{"disk": d}}}
	}
	doc := map[string]any{"stream": "stable", "metadata": map[string]string{"last-modified": "2026-11-01T00:00:00Z"},
		"architectures": map[string]any{"x86_64": map[string]any{"artifacts": map[string]any{
			"qemu":     disk("qcow2.xz", "f-qemu.x86_64.qcow2.xz", usum),
			"gcp":      disk("tar.gz", "f-gcp.x86_64.tar.gz", ""),
			"kubevirt": disk("ociarchive", "f-kubevirt.x86_64.ociarchive", ""),
			"nutanix":  disk("qcow2", "f-nutanix.x86_64.qcow2", ""),
			"hyperv":   disk("vhdx.zip", "f-hyperv.x86_64.vhdx.zip", ""),
		}}}}
	js, _ := json.MarshalIndent(doc, "", "  ")
	write(filepath.Join(dir, "stream.json"), js)

	res, err := Dehydrate(context.Background(), dir, Options{WorkDir: t.TempDir(), Progress: func(m string) { t.Log(m) }})
	if err != nil {
		t.Fatal(err) // includes the self-check: every file must come out bit for bit
	}
	want := map[string]string{
		"gcp.x86_64.tar.gz":          "qcow2-decode+delta+gnu-sparse-tar+gzip",
		"kubevirt.x86_64.ociarchive": "delta+ociarchive+gzip+ociarchive",
		"nutanix.x86_64.qcow2":       "qcow2-decode+delta+qcow2-compressed",
		"hyperv.x86_64.vhdx.zip":     "qcow2-decode+delta+vhdx-dynamic+zip",
	}
	got := methods(res)
	for name, m := range want {
		if got[name] != m {
			t.Errorf("%s: method %q, want %q", name, got[name], m)
		}
	}
	for _, p := range res.Plans {
		if _, ok := want[strings.SplitN(p.Name, "-", 2)[1]]; !ok {
			continue
		}
		t.Logf("%s: %s, %d bytes stored (%d compressed) for a %d-byte file", p.Name, p.Method, p.StoredBytes, p.PackedBytes, p.Size)
		if p.PackedBytes > p.Size/10 {
			t.Errorf("%s: costs %d bytes of %d, over 10%%", p.Name, p.PackedBytes, p.Size)
		}
	}
}

package dehydrate

import (
	"context"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// A hyperv VHDX (qemu-img convert -O vhdx, as osbuild makes it) of the baseline's guest with
// the platform stamped in is planned by the format route as it is for the other formats:
// qcow2-decode+delta+vhdx-dynamic, a small fraction of the file, and it rehydrates bit for bit
// (Dehydrate's self-check). Nothing in the planner names VHDX: internal/diskview's table does.
func TestDehydrateVHDX(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewSource(9))
	raw := make([]byte, 40<<20)
	rng.Read(raw[:5<<20])
	rng.Read(raw[17<<20 : 21<<20])
	copy(raw[1<<20:], "options root=UUID=x ignition.platform.id=qemu\n")
	stamped := append([]byte(nil), raw...)
	copy(stamped[1<<20:], "options root=UUID=x ignition.platform.id=hyperv\n")
	for name, b := range map[string][]byte{"base.raw": raw, "hyperv.raw": stamped} {
		if err := os.WriteFile(filepath.Join(work, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	qcow := filepath.Join(dir, "f-qemu.x86_64.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", filepath.Join(work, "base.raw"), qcow)
	usum := fileSum(t, qcow)
	run(t, "xz", "-1", "-T2", qcow)
	vx := filepath.Join(dir, "f-hyperv.x86_64.vhdx")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", filepath.Join(work, "hyperv.raw"), vx)
	st, err := os.Stat(vx)
	if err != nil {
		t.Fatal(err)
	}
	disk := func(format, file, sha, usha string) map[string]any {
		return map[string]any{"release": "1", "formats": map[string]any{format: map[string]any{"disk": map[string]string{
			"location": "https://example.com/b/" + file, "sha256": sha, "uncompressed-sha256": usha}}}}
	}
	// Shipped as it is here: the real stream's vhdx.zip adds a zip step in front, not a route.
	doc := map[string]any{"stream": "stable", "metadata": map[string]string{"last-modified": "2026-11-01T00:00:00Z"},
		"architectures": map[string]any{"x86_64": map[string]any{"artifacts": map[string]any{
			"qemu":   disk("qcow2.xz", "f-qemu.x86_64.qcow2.xz", fileSum(t, qcow+".xz"), usum),
			"hyperv": disk("vhdx", "f-hyperv.x86_64.vhdx", fileSum(t, vx), fileSum(t, vx)),
		}}}}
	js, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "stream.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}

	res, err := Dehydrate(context.Background(), dir, Options{WorkDir: t.TempDir(), Progress: func(m string) { t.Log(m) }})
	if err != nil {
		t.Fatal(err) // includes the self-check: the VHDX must come out bit for bit
	}
	for _, p := range res.Plans {
		if p.Name != "f-hyperv.x86_64.vhdx" {
			continue
		}
		t.Logf("%s: %s, %d bytes stored (%d compressed) for a %d-byte file", p.Name, p.Method, p.StoredBytes, p.PackedBytes, p.Size)
		if p.Method != "qcow2-decode+delta+vhdx-dynamic" {
			t.Fatalf("method %q, want qcow2-decode+delta+vhdx-dynamic", p.Method)
		}
		if p.Size != st.Size() || p.StoredBytes > p.Size/100 || p.PackedBytes > 64<<10 {
			t.Fatalf("stores %d bytes (%d compressed) for a %d-byte VHDX, want <= 1%% and <= 64 KiB compressed", p.StoredBytes, p.PackedBytes, p.Size)
		}
		return
	}
	t.Fatal("no plan for the VHDX")
}

package dehydrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// miniRelease makes a release of three disks with the real qemu-img and xz: qemu.qcow2, an
// openstack.qcow2 whose edit lands in a zero region in the middle of the disk (a new cluster
// that shifts every later cluster of the qcow2 file), and a metal raw disk.
func miniRelease(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	work := t.TempDir()
	rng := rand.New(rand.NewSource(7))
	raw := make([]byte, 48<<20)
	rng.Read(raw[:6<<20])
	rng.Read(raw[30<<20 : 36<<20])
	write := func(name string, b []byte) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := write("base.raw", raw)
	edited := append([]byte(nil), raw...)
	copy(edited[20<<20:], "ignition.platform.id=openstack")
	copy(edited[100:], "openstack")
	ed := write("edited.raw", edited)
	metal := append([]byte(nil), raw...)
	copy(metal[100:], "metal")
	type art struct{ platform, format, file, src string }
	arts := []art{
		{"qemu", "qcow2.xz", "f-qemu.x86_64.qcow2", base},
		{"openstack", "qcow2.xz", "f-openstack.x86_64.qcow2", ed},
		{"metal", "raw.xz", "f-metal.x86_64.raw", ""},
	}
	doc := map[string]any{"stream": "stable", "metadata": map[string]string{"last-modified": "2026-11-01T00:00:00Z"}}
	artifacts := map[string]any{}
	for _, a := range arts {
		out := filepath.Join(dir, a.file)
		if a.src != "" {
			run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", a.src, out)
		} else if err := os.WriteFile(out, metal, 0o644); err != nil {
			t.Fatal(err)
		}
		usum := fileSum(t, out)
		run(t, "xz", "-1", "-T2", out)
		artifacts[a.platform] = map[string]any{"release": "1", "formats": map[string]any{a.format: map[string]any{"disk": map[string]string{
			"location": "https://example.com/b/" + a.file + ".xz", "sha256": fileSum(t, out+".xz"), "uncompressed-sha256": usum}}}}
	}
	doc["architectures"] = map[string]any{"x86_64": map[string]any{"artifacts": artifacts}}
	js, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "stream.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func methods(res *Result) map[string]string {
	m := map[string]string{}
	for _, p := range res.Plans {
		m[strings.SplitN(p.Name, "-", 2)[1]] = p.Method
	}
	return m
}

func TestDehydrate(t *testing.T) {
	rel := miniRelease(t)
	res, err := Dehydrate(context.Background(), rel, Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	got := methods(res)
	want := map[string]string{"qemu.x86_64.qcow2": "baseline", "openstack.x86_64.qcow2": "delta", "metal.x86_64.raw": "qcow2-decode+delta"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: method %q, want %q", k, got[k], v)
		}
	}
	for _, p := range res.Plans {
		if p.Method != "baseline" && p.PackedBytes > 64<<10 {
			t.Errorf("%s costs %d bytes compressed, want <= 64 KiB", p.Name, p.PackedBytes)
		}
	}
}

func TestDehydrateReencodesShiftedQcow2(t *testing.T) {
	forceReencode = true
	defer func() { forceReencode = false }()
	rel := miniRelease(t)
	res, err := Dehydrate(context.Background(), rel, Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err) // includes the self-check: the re-encoded qcow2 must be bit for bit
	}
	if m := methods(res)["openstack.x86_64.qcow2"]; m != "qcow2-decode+delta+qcow2-encode" {
		t.Fatalf("openstack method %q, want the re-encode route", m)
	}
}

func TestDehydrateRefusesBadRelease(t *testing.T) {
	rel := miniRelease(t)
	p := filepath.Join(rel, "f-openstack.x86_64.qcow2.xz")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 1
	os.WriteFile(p, b, 0o644)
	_, err := Dehydrate(context.Background(), rel, Options{WorkDir: t.TempDir()})
	if !errors.Is(err, ErrRelease) || !strings.Contains(err.Error(), "f-openstack.x86_64.qcow2.xz") {
		t.Fatalf("flipped byte: %v", err)
	}
	os.Remove(p)
	_, err = Dehydrate(context.Background(), rel, Options{WorkDir: t.TempDir()})
	if !errors.Is(err, ErrRelease) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
	_, err = Dehydrate(context.Background(), t.TempDir(), Options{WorkDir: t.TempDir()})
	if !errors.Is(err, ErrRelease) || !strings.Contains(err.Error(), "stream.json") {
		t.Fatalf("empty dir: %v", err)
	}
}

// TestPXEFromISO: a live ISO made by the real xorriso holds the PXE files under
// images/pxeboot/; the planner must cut them out of the ISO (zero bytes stored) and the
// self-check must reproduce them.
func TestPXEFromISO(t *testing.T) {
	rel := miniRelease(t)
	tree := t.TempDir()
	rng := rand.New(rand.NewSource(9))
	pxe := map[string][]byte{}
	for _, f := range []struct{ name, kind string }{{"vmlinuz", "kernel"}, {"initrd.img", "initramfs"}, {"rootfs.img", "rootfs"}} {
		b := make([]byte, 200_000+rng.Intn(100_000))
		rng.Read(b)
		pxe[f.kind] = b
		p := filepath.Join(tree, "images/pxeboot", f.name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(tree, "README"), []byte("live\n"), 0o644)
	isoPath := filepath.Join(rel, "f-live.x86_64.iso")
	run(t, "xorriso", "-as", "mkisofs", "-R", "-J", "-V", "fedora-coreos-live", "-o", isoPath, tree)

	var doc map[string]any
	js, _ := os.ReadFile(filepath.Join(rel, "stream.json"))
	json.Unmarshal(js, &doc)
	metal := doc["architectures"].(map[string]any)["x86_64"].(map[string]any)["artifacts"].(map[string]any)["metal"].(map[string]any)
	formats := metal["formats"].(map[string]any)
	isoSum := fileSum(t, isoPath)
	formats["iso"] = map[string]any{"disk": map[string]string{"location": "https://example.com/b/f-live.x86_64.iso", "sha256": isoSum}}
	pxeFormat := map[string]any{}
	names := map[string]string{"kernel": "f-live-kernel-x86_64", "initramfs": "f-live-initramfs.x86_64.img", "rootfs": "f-live-rootfs.x86_64.img"}
	for kind, b := range pxe {
		p := filepath.Join(rel, names[kind])
		os.WriteFile(p, b, 0o644)
		pxeFormat[kind] = map[string]string{"location": "https://example.com/b/" + names[kind], "sha256": fileSum(t, p)}
	}
	formats["pxe"] = pxeFormat
	js, _ = json.MarshalIndent(doc, "", "  ")
	os.WriteFile(filepath.Join(rel, "stream.json"), js, 0o644)

	res, err := Dehydrate(context.Background(), rel, Options{WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Plans {
		switch {
		case strings.Contains(p.Name, "live-"):
			if p.Method != "extract from f-live.x86_64.iso" || p.StoredBytes != 0 {
				t.Errorf("%s: %s storing %d bytes, want an extract of the ISO storing nothing", p.Name, p.Method, p.StoredBytes)
			}
		case strings.HasSuffix(p.Name, ".iso"):
			if p.Method != "whole" {
				t.Errorf("ISO: %s", p.Method)
			}
		}
	}
}

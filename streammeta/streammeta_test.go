package streammeta

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

const sample = `{
  "stream": "stable",
  "metadata": {"last-modified": "2026-11-01T00:00:00Z"},
  "architectures": {"x86_64": {"artifacts": {
    "metal": {"release": "40.1", "formats": {
      "4k.raw.xz": {"disk": {"location": "https://x/b/fcos-metal4k.x86_64.raw.xz", "sha256": "%[1]s", "uncompressed-sha256": "%[2]s"}},
      "raw.xz": {"disk": {"location": "https://x/b/fcos-metal.x86_64.raw.xz", "sha256": "%[1]s", "uncompressed-sha256": "%[2]s"}},
      "iso": {"disk": {"location": "https://x/b/fcos-live.x86_64.iso", "sha256": "%[1]s"}},
      "pxe": {"kernel": {"location": "https://x/b/fcos-live-kernel-x86_64", "sha256": "%[1]s"},
              "initramfs": {"location": "https://x/b/fcos-live-initramfs.x86_64.img", "sha256": "%[1]s"}}}},
    "gcp": {"release": "40.1", "formats": {"tar.gz": {"disk": {"location": "https://x/b/fcos-gcp.x86_64.tar.gz", "sha256": "%[1]s", "uncompressed-sha256": "%[2]s"}}}},
    "digitalocean": {"release": "40.1", "formats": {"qcow2.gz": {"disk": {"location": "https://x/b/fcos-digitalocean.x86_64.qcow2.gz", "sha256": "%[1]s", "uncompressed-sha256": "%[2]s"}}}}
  }}}
}`

func fill(a, b string) []byte {
	s := strings.ReplaceAll(sample, "%[1]s", a)
	return []byte(strings.ReplaceAll(s, "%[2]s", b))
}

func TestParse(t *testing.T) {
	h := strings.Repeat("ab", 32)
	rel, err := Parse(fill(h, strings.Repeat("cd", 32)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Artifact{}
	for _, a := range rel.Artifacts {
		got[a.ID()] = a
	}
	m4k := got["x86_64/metal/4k.raw.xz/disk"]
	if m4k.DiskName() != "metal4k" || m4k.Name != "fcos-metal4k.x86_64.raw" || m4k.Compression != "xz" {
		t.Errorf("metal4k: %+v", m4k)
	}
	if a := got["x86_64/metal/raw.xz/disk"]; a.DiskName() != "metal" {
		t.Errorf("metal disk name %q", a.DiskName())
	}
	iso := got["x86_64/metal/iso/disk"]
	if !iso.IsISO() || iso.DiskName() != "" || iso.UncompressedSHA256 != h || iso.Compression != "" {
		t.Errorf("iso: %+v", iso)
	}
	if a := got["x86_64/metal/pxe/kernel"]; !a.IsPXE() || a.Name != "fcos-live-kernel-x86_64" {
		t.Errorf("pxe kernel: %+v", a)
	}
	if a := got["x86_64/gcp/tar.gz/disk"]; a.Compression != "gzip" || a.Name != "fcos-gcp.x86_64.tar" {
		t.Errorf("gcp tar.gz rehydrates to its tar: %+v", a)
	}
	if a := got["x86_64/digitalocean/qcow2.gz/disk"]; a.Compression != "gzip" || a.Name != "fcos-digitalocean.x86_64.qcow2" {
		t.Errorf("digitalocean: %+v", a)
	}
}

func TestParseRejects(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, c := range []struct{ name, doc, want string }{
		{"not json", "{", "invalid stream metadata"},
		{"no arches", `{"stream":"x","architectures":{}}`, "no architectures"},
		{"short sha", string(fill("abc", h)), "not 64 hex digits"},
		{"no location", strings.Replace(string(fill(h, h)), `"https://x/b/fcos-gcp.x86_64.tar.gz"`, `""`, 1), "no location"},
		{"dir location", strings.Replace(string(fill(h, h)), `https://x/b/fcos-gcp.x86_64.tar.gz`, `https://x/b/`, 1), "does not end in a file name"},
	} {
		_, err := Parse([]byte(c.doc))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

func TestDecompress(t *testing.T) {
	dir := t.TempDir()
	content := bytes.Repeat([]byte("fedora coreos "), 10000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(content)
	zw.Close()
	os.WriteFile(filepath.Join(dir, "a.qcow2.gz"), gz.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "a.qcow2"), content, 0o644)
	if err := exec.Command("xz", "-k", "-1", filepath.Join(dir, "a.qcow2")).Run(); err != nil {
		t.Fatalf("xz: %v", err)
	}
	xzData, _ := os.ReadFile(filepath.Join(dir, "a.qcow2.xz"))
	cases := []struct {
		name, file, comp string
		shipped          []byte
	}{
		{"gzip", "a.qcow2.gz", "gzip", gz.Bytes()},
		{"xz", "a.qcow2.xz", "xz", xzData},
		{"plain", "a.qcow2", "", content},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := Artifact{Arch: "x86_64", Platform: "p", Format: "f", Kind: "disk", Compression: c.comp, SHA256: sum(c.shipped), UncompressedSHA256: sum(content)}
			var out bytes.Buffer
			n, err := Decompress(context.Background(), a, filepath.Join(dir, c.file), &out)
			if err != nil || n != int64(len(content)) || !bytes.Equal(out.Bytes(), content) {
				t.Fatalf("n=%d err=%v", n, err)
			}
			a.SHA256 = sum([]byte("other"))
			if _, err := Decompress(context.Background(), a, filepath.Join(dir, c.file), &bytes.Buffer{}); !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "re-download") {
				t.Fatalf("wrong shipped sha: %v", err)
			}
			a.SHA256, a.UncompressedSHA256 = sum(c.shipped), sum([]byte("other"))
			if _, err := Decompress(context.Background(), a, filepath.Join(dir, c.file), &bytes.Buffer{}); !errors.Is(err, ErrChecksum) {
				t.Fatalf("wrong uncompressed sha: %v", err)
			}
		})
	}
	// A flipped byte in a compressed file is caught (by the decoder or the checksum).
	bad := bytes.Clone(xzData)
	bad[len(bad)/2] ^= 0xff
	os.WriteFile(filepath.Join(dir, "bad.xz"), bad, 0o644)
	a := Artifact{Compression: "xz", SHA256: sum(xzData), UncompressedSHA256: sum(content)}
	if _, err := Decompress(context.Background(), a, filepath.Join(dir, "bad.xz"), &bytes.Buffer{}); err == nil {
		t.Fatal("corrupt xz accepted")
	}
}

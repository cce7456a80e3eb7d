package diskview

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func gunzip(t *testing.T, p string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every format opens as the same guest bytes qemu-img reads from it.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	raw := bytes.Repeat([]byte("guest bytes\x00\x00\x00\x00"), 1<<16) // 1 MiB
	rawPath := filepath.Join(dir, "disk.raw")
	os.WriteFile(rawPath, raw, 0o644)
	files := map[string][]string{
		"qcow2": {"-O", "qcow2"},
		"vmdk":  {"-O", "vmdk", "-o", "subformat=streamOptimized"},
		"vhd":   {"-O", "vpc", "-o", "subformat=fixed,force_size"},
	}
	cases := map[string][]byte{"raw": raw}
	for name, args := range files {
		out := filepath.Join(dir, "disk."+name)
		cmd := exec.Command("qemu-img", append(append([]string{"convert", "-f", "raw"}, args...), rawPath, out)...)
		if o, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v\n%s", err, o)
		}
		cases[name], _ = os.ReadFile(out)
	}
	for want, b := range cases {
		v, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		if v.Format != want || v.Size != int64(len(raw)) {
			t.Fatalf("%s: opened as %s of %d bytes", want, v.Format, v.Size)
		}
		got := make([]byte, v.Size)
		if _, err := v.ReadAt(got, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("%s: guest bytes differ", want)
		}
	}
	tarball := gunzip(t, "../../sparsetar/testdata/extended.tar.gz")
	if v, err := Open(bytes.NewReader(tarball), int64(len(tarball))); err != nil || v.Format != "gnu-sparse-tar" {
		t.Fatalf("sparse tar: %v %v", v, err)
	}
	// A damaged VMDK is an error, not a raw disk.
	bad := bytes.Clone(cases["vmdk"][:600])
	if _, err := Open(bytes.NewReader(bad), int64(len(bad))); err == nil {
		t.Fatal("a truncated VMDK opened")
	}
}

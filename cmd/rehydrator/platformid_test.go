package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runTool(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// platformid reads a dynamic VHDX, as osbuild ships hyperv's (qemu-img convert -O vhdx),
// through internal/diskview's table like every other format; a damaged one is refused with
// the VHDX's own error.
func TestPlatformIDVHDX(t *testing.T) {
	dir := t.TempDir()
	entries := filepath.Join(dir, "tree", "loader.1", "entries")
	if err := os.MkdirAll(entries, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := "title Fedora CoreOS 44\nversion 1\nlinux /ostree/fedora-coreos-abc/vmlinuz\noptions ignition.platform.id=hyperv console=tty0 root=UUID=x rw\n"
	os.WriteFile(filepath.Join(entries, "ostree-1.conf"), []byte(conf), 0o644)
	os.Symlink("loader.1", filepath.Join(dir, "tree", "loader"))
	fs, raw, vx := filepath.Join(dir, "boot.ext4"), filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.vhdx")
	runTool(t, "truncate", "-s", "2M", fs)
	runTool(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-d", filepath.Join(dir, "tree"), fs)
	runTool(t, "truncate", "-s", "5M", raw)
	runTool(t, "sgdisk", "-o", "-n", "1:2048:+512K", "-c", "1:EFI-SYSTEM", "-n", "2:4096:+2M", "-c", "2:boot", raw)
	runTool(t, "dd", "if="+fs, "of="+raw, "bs=512", "seek=4096", "conv=notrunc", "status=none")
	runTool(t, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", raw, vx)

	platformid := func(args ...string) (string, error) {
		cmd := newPlatformIDCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		err := cmd.Execute()
		return out.String(), err
	}
	if out, err := platformid(vx); err != nil || out != "hyperv\n" {
		t.Fatalf("platformid %s: %q, %v", vx, out, err)
	}
	if out, err := platformid("-v", vx); err != nil || !strings.HasPrefix(out, "hyperv\tvhdx\tpartition 2\t") {
		t.Fatalf("platformid -v %s: %q, %v", vx, out, err)
	}
	b, _ := os.ReadFile(vx)
	cut := filepath.Join(dir, "cut.vhdx")
	os.WriteFile(cut, b[:4096], 0o644)
	if _, err := platformid(cut); err == nil || !strings.Contains(err.Error(), "vhdx: corrupt") || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("platformid of a cut VHDX: %v, want the VHDX's error", err)
	}
}

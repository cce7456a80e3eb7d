package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// smallFS mounts a tmpfs of size bytes (as root, as CI runs) and unmounts it at the end.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (%v): this test needs root (CI runs as root)", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestFullDisk fills DEST: the artifact that does not fit fails with one line and leaves
// nothing at its final path, while one written before it stays complete.
func TestFullDisk(t *testing.T) {
	ref, sm := sharedLayout(t)
	qemu, openstack := find(t, sm, "qemu"), find(t, sm, "openstack")
	sizes := artifactSizes(t, ref)

	t.Run("nothing fits", func(t *testing.T) {
		dest := smallFS(t, "1m")
		mustFail(t, nil, "no space left on device: free space", "rehydrate", dest, "--disk", "openstack", "--image", ref)
		assertOnly(t, dest)
	})

	t.Run("the second does not fit", func(t *testing.T) {
		// Room for the qemu disk and half of the openstack one.
		dest := smallFS(t, strconv.FormatInt(sizes[qemu.Name]+sizes[openstack.Name]/2, 10))
		mustFail(t, nil, "no space left on device", "rehydrate", dest, "--disk", "qemu", "--disk", "openstack", "--image", ref)
		assertOnly(t, dest, qemu.Name)
		if got := fileSHA(t, filepath.Join(dest, qemu.Name)); got != qemu.UncompressedSHA256 {
			t.Fatalf("%s: sha256 %s after the disk filled up", qemu.Name, got)
		}
	})

	t.Run("intermediate files", func(t *testing.T) {
		// metal needs the baseline decoded into a spool under --tmpdir.
		tmp := smallFS(t, "1m")
		dest := t.TempDir()
		mustFail(t, nil, "no space left on device", "rehydrate", dest, "--disk", "metal", "--image", ref, "--tmpdir", tmp)
		assertOnly(t, dest)
		assertOnly(t, tmp)
	})

	t.Run("stdout", func(t *testing.T) {
		// Standard output on /dev/full: every write fails with ENOSPC.
		full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
		if err != nil {
			t.Fatalf("/dev/full: %v", err)
		}
		defer full.Close()
		cmd := exec.Command(bin, "rehydrate", "-", "--disk", "openstack", "--image", ref)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = full, &stderr
		if err := cmd.Run(); err == nil {
			t.Fatal("rehydrate to /dev/full succeeded")
		}
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "\n") || !strings.Contains(msg, "no space left on device") {
			t.Fatalf("rehydrate to /dev/full: want one line about no space, got %q", msg)
		}
	})
}

// artifactSizes reads the size of every artifact from "list".
func artifactSizes(t *testing.T, ref string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, line := range strings.Split(string(mustRun(t, "list", "--image", ref)), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		n, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			t.Fatalf("list: size %q of %s: %v", f[4], f[3], err)
		}
		out[f[3]] = n
	}
	return out
}

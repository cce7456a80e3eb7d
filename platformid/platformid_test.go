package platformid

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// bootDisk makes, with the real sgdisk and mkfs.ext4, a GPT disk whose partition 2 ("boot")
// holds an ext4 filesystem laid out as ostree's: loader -> loader.1, loader.1/entries/*.conf.
func bootDisk(t testing.TB, id string, blockSize int, extra int) []byte {
	return makeDisk(t, id, blockSize, extra, false)
}

// tinyDisk is a 260 KiB disk with the boot filesystem (192 KiB, no journal) as partition 1:
// small enough to fuzz.
func tinyDisk(t testing.TB, id string) []byte { return makeDisk(t, id, 1024, 0, true) }

func makeDisk(t testing.TB, id string, blockSize int, extra int, tiny bool) []byte {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	entries := filepath.Join(tree, "loader.1", "entries")
	if err := os.MkdirAll(entries, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf("title Fedora CoreOS 41\nversion 1\nlinux /ostree/fedora-coreos-abc/vmlinuz\ninitrd /ostree/fedora-coreos-abc/initramfs.img\noptions mitigations=auto,nosmt ignition.platform.id=%s console=ttyS0 root=UUID=x rw\n", id)
	os.WriteFile(filepath.Join(entries, "ostree-1.conf"), []byte(conf), 0o644)
	for i := 0; i < extra; i++ { // a bigger directory and more inodes
		os.WriteFile(filepath.Join(tree, fmt.Sprintf("file-%04d-with-a-long-name", i)), bytes.Repeat([]byte{byte(i)}, 3000), 0o644)
	}
	os.Symlink("loader.1", filepath.Join(tree, "loader"))
	fsImg := filepath.Join(dir, "boot.ext4")
	disk := filepath.Join(dir, "disk.raw")
	start := 4096
	if tiny {
		start = 40
		run(t, "truncate", "-s", "192K", fsImg)
		run(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-N", "16", "-d", tree, fsImg)
		run(t, "truncate", "-s", "260K", disk)
		run(t, "sgdisk", "-a", "8", "-o", "-n", "1:40:+192K", "-c", "1:boot", disk)
	} else {
		run(t, "truncate", "-s", "2M", fsImg)
		run(t, "mkfs.ext4", "-q", "-F", "-b", fmt.Sprint(blockSize), "-d", tree, fsImg)
		run(t, "truncate", "-s", "5M", disk)
		run(t, "sgdisk", "-o", "-n", "1:2048:+512K", "-c", "1:EFI-SYSTEM", "-n", "2:4096:+2M", "-c", "2:boot", disk)
	}
	fsb, _ := os.ReadFile(fsImg)
	d, _ := os.ReadFile(disk)
	copy(d[start*512:], fsb)
	return d
}

func TestRead(t *testing.T) {
	for _, c := range []struct {
		bs, extra int
	}{{4096, 0}, {1024, 0}, {1024, 150}} {
		t.Run(fmt.Sprintf("bs%d-files%d", c.bs, c.extra), func(t *testing.T) {
			d := bootDisk(t, "aws", c.bs, c.extra)
			info, err := Read(bytes.NewReader(d), int64(len(d)))
			if err != nil {
				t.Fatal(err)
			}
			if info.ID != "aws" || info.Partition != 2 || info.Entry != "/loader/entries/ostree-1.conf" || !strings.Contains(info.Options, "console=ttyS0") {
				t.Fatalf("%+v", info)
			}
		})
	}
}

func TestReadTiny(t *testing.T) {
	d := tinyDisk(t, "openstack")
	if info, err := Read(bytes.NewReader(d), int64(len(d))); err != nil || info.ID != "openstack" || info.Partition != 1 {
		t.Fatalf("%+v %v", info, err)
	}
}

func TestReadRefuses(t *testing.T) {
	d := bootDisk(t, "gcp", 4096, 0)
	if _, err := Read(bytes.NewReader(make([]byte, 1<<20)), 1<<20); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no GPT") {
		t.Fatalf("zeros: %v", err)
	}
	noFS := bytes.Clone(d)
	clear(noFS[4096*512:])
	if _, err := Read(bytes.NewReader(noFS), int64(len(noFS))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no filesystem: %v", err)
	}
	// A superblock with an absurd geometry is corrupt, and the message says where.
	bad := bytes.Clone(d)
	bad[4096*512+1024+0x18] = 60
	if _, err := Read(bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "offset 0x200000") {
		t.Fatalf("bad superblock: %v", err)
	}
	// A truncated disk: the partition runs past its end.
	if _, err := Read(bytes.NewReader(d[:3<<20]), 3<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: %v", err)
	}
}

func FuzzRead(f *testing.F) {
	f.Add(tinyDisk(f, "azure"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := Read(bytes.NewReader(b), int64(len(b)))
		if err == nil && info.ID == "" && !strings.Contains(info.Options, "ignition.platform.id=") {
			t.Fatalf("found nothing but said nothing: %+v", info)
		}
	})
}

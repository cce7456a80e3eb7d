package iso

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// requireTools fails (never skips) when a tool the tests drive is missing:
// CI installs xorriso, squashfs-tools and cpio.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s is not installed (CI installs xorriso, squashfs-tools and cpio): %v", n, err)
		}
	}
}

// run runs a command in dir and returns its standard output.
func run(t testing.TB, dir, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// liveTree is a directory laid out like the root of a Fedora CoreOS live ISO.
type liveTree struct {
	dir   string
	files map[string][]byte // slash path below dir -> content, regular files only
}

// pxeFiles are the live ISO members that ship again as the PXE artifacts.
var pxeFiles = []string{"images/pxeboot/vmlinuz", "images/pxeboot/initrd.img", "images/pxeboot/rootfs.img"}

// longName needs a Rock Ridge continuation area (CE): it does not fit in the
// system use area of a directory record.
var longName = strings.Repeat("long-name-", 20) + ".txt"

// makeLiveTree writes the tree: random kernel, a newc cpio initramfs, a newc
// cpio rootfs.img holding a squashfs made by mksquashfs, boot stand-ins, and a
// few awkward names. deep adds a directory chain deeper than ECMA-119's 8 levels.
func makeLiveTree(t testing.TB, deep bool) liveTree {
	t.Helper()
	requireTools(t, "mksquashfs", "cpio")
	work := t.TempDir()
	lt := liveTree{dir: filepath.Join(work, "tree"), files: map[string][]byte{}}
	add := func(p string, data []byte) {
		writeFile(t, filepath.Join(lt.dir, p), data)
		lt.files[p] = data
	}
	add("images/pxeboot/vmlinuz", randomBytes(t, 1<<20+123))

	// initramfs: a newc cpio (Fedora's is compressed too; the bytes do not matter here).
	initrd := filepath.Join(work, "initrd")
	writeFile(t, filepath.Join(initrd, "init"), []byte("#!/bin/sh\nexec /usr/lib/systemd/systemd\n"))
	writeFile(t, filepath.Join(initrd, "usr/lib/modules/a.ko"), randomBytes(t, 200<<10))
	add("images/pxeboot/initrd.img", cpioNewc(t, initrd, "init", "usr/lib/modules/a.ko"))

	// rootfs.img: a newc cpio holding root.squashfs, as coreos-assembler makes it.
	sqRoot := filepath.Join(work, "sqroot")
	writeFile(t, filepath.Join(sqRoot, "usr/bin/ignition"), randomBytes(t, 300<<10))
	writeFile(t, filepath.Join(sqRoot, "etc/os-release"), []byte("NAME=\"Fedora Linux\"\nVARIANT_ID=coreos\n"))
	sqDir := filepath.Join(work, "sq")
	if err := os.MkdirAll(sqDir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, work, "mksquashfs", sqRoot, filepath.Join(sqDir, "root.squashfs"), "-noappend", "-no-progress", "-quiet")
	add("images/pxeboot/rootfs.img", cpioNewc(t, sqDir, "root.squashfs"))

	add("images/efiboot.img", randomBytes(t, 64<<10))    // stand-in for the EFI FAT image
	add("images/ignition.img", make([]byte, 256<<10))    // the embed area is zeros
	add("images/decoy.img", randomBytes(t, 1<<20+123))   // same size as vmlinuz, other bytes
	add("isolinux/isolinux.bin", randomBytes(t, 24<<10)) // stand-in; -boot-info-table patches it
	add("isolinux/isolinux.cfg", []byte("default vesamenu.c32\n"))
	add("EFI/fedora/grub.cfg", []byte("menuentry 'Fedora CoreOS (Live)' {}\n"))
	add("coreos/features.json", []byte(`{"installer-config": true}`+"\n"))
	add("docs/read me.txt", []byte("spaces\n"))
	add("docs/"+longName, []byte("long\n"))
	add("docs/empty", nil)
	if err := os.Symlink("read me.txt", filepath.Join(lt.dir, "docs/link")); err != nil {
		t.Fatal(err)
	}
	if deep {
		add("deep/a/b/c/d/e/f/g/h/i/j/file.txt", []byte("deep\n"))
	}
	return lt
}

// cpioNewc archives names (relative to dir) with `cpio -o -H newc`.
func cpioNewc(t testing.TB, dir string, names ...string) []byte {
	t.Helper()
	cmd := exec.Command("cpio", "-o", "-H", "newc", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio -o -H newc: %v\n%s", err, stderr.Bytes())
	}
	return out.Bytes()
}

const liveLabel = "fedora-coreos-40.20240416.3.1"

// makeLiveISO makes the live ISO the way coreos-assembler does: Rock Ridge,
// Joliet, El Torito BIOS (isolinux) and EFI boot images.
func makeLiveISO(t testing.TB, lt liveTree) string {
	t.Helper()
	requireTools(t, "xorriso")
	out := filepath.Join(t.TempDir(), "live.iso")
	run(t, "", "xorriso", "-as", "mkisofs", "-R", "-J", "-joliet-long", "-V", liveLabel,
		"-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
		"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"-eltorito-alt-boot", "-e", "images/efiboot.img", "-no-emul-boot",
		"-o", out, lt.dir)
	return out
}

// xorrisoFind lists the paths `xorriso -indev iso -find / ARGS` prints.
func xorrisoFind(t testing.TB, iso string, args ...string) []string {
	t.Helper()
	out := run(t, "", "xorriso", append([]string{"-indev", iso, "-find", "/"}, args...)...)
	var paths []string
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		paths = append(paths, unquoteXorriso(t, line))
	}
	slices.Sort(paths)
	return paths
}

// unquoteXorriso undoes xorriso's shell-style quoting: 'it'"'"'s' is it's.
func unquoteXorriso(t testing.TB, s string) string {
	t.Helper()
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		t.Fatalf("xorriso printed %q, not a quoted path", s)
	}
	return strings.ReplaceAll(s[1:len(s)-1], `'"'"'`, `'`)
}

// xorrisoBootCatalog returns the boot catalog's path, which xorriso lists as
// neither a file nor a directory.
func xorrisoBootCatalog(t testing.TB, iso string) string {
	t.Helper()
	out := run(t, "", "xorriso", "-indev", iso, "-report_el_torito", "plain")
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "El Torito cat path" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

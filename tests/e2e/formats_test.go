package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/streammeta"
	"github.com/rehydrator/rehydrator/tests/fixtures"
)

// checkFormats checks the rehydrated VMDK, OVA, VHD, GCP tar and gzipped qcow2 of an image
// built from a release with every platform: each took its format's recipe (not "whole"), and
// the real qemu-img and tar accept it and see the same disk as in the shipped original.
func checkFormats(t *testing.T, ref, out string, sm *streammeta.Release, orig map[string]string) {
	t.Helper()
	list := string(mustRun(t, "list", "--image", ref))
	recipe := func(disk string) string {
		name := find(t, sm, disk).Name
		for _, l := range strings.Split(list, "\n") {
			if strings.Contains(l, name) {
				return l
			}
		}
		t.Fatalf("list has no %s:\n%s", name, list)
		return ""
	}
	for disk, want := range map[string][]string{
		"aws":          {"qcow2-decode", "vmdk-encode"},
		"vmware":       {"qcow2-decode", "vmdk-encode", "-> ova"},
		"azure":        {"qcow2-decode", "vhd-fixed"},
		"gcp":          {"qcow2-decode", "gnu-sparse-tar"},
		"digitalocean": {"patch("},
	} {
		l := recipe(disk)
		for _, w := range want {
			if !strings.Contains(l, w) {
				t.Errorf("%s: recipe does not use %q: %s", disk, w, l)
			}
		}
	}
	dir := t.TempDir()
	// rawOf is the original's guest view as a raw file, converted by qemu-img.
	rawOf := func(disk, format string) string {
		p := filepath.Join(dir, disk+".orig.raw")
		tool(t, "qemu-img", "convert", "-f", format, "-O", "raw", orig[find(t, sm, disk).Name], p)
		return p
	}
	path := func(disk string) string { return filepath.Join(out, find(t, sm, disk).Name) }

	vmdk := path("aws")
	tool(t, "qemu-img", "check", "-f", "vmdk", vmdk)
	tool(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", vmdk, rawOf("aws", "vmdk"))

	ova := path("vmware")
	members := tool(t, "tar", "tvf", ova)
	for _, m := range []string{"coreos.ovf", "disk.vmdk"} {
		if !strings.Contains(members, m) {
			t.Fatalf("tar tvf %s does not list %s:\n%s", ova, m, members)
		}
	}
	ovaDir := filepath.Join(dir, "ova")
	tool(t, "mkdir", ovaDir)
	tool(t, "tar", "xf", ova, "-C", ovaDir)
	inner := filepath.Join(ovaDir, "disk.vmdk")
	tool(t, "qemu-img", "check", "-f", "vmdk", inner)
	origDir := filepath.Join(dir, "ova-orig")
	tool(t, "mkdir", origDir)
	tool(t, "tar", "xf", orig[find(t, sm, "vmware").Name], "-C", origDir, "disk.vmdk")
	ovaRaw := filepath.Join(dir, "vmware.orig.raw")
	tool(t, "qemu-img", "convert", "-f", "vmdk", "-O", "raw", filepath.Join(origDir, "disk.vmdk"), ovaRaw)
	tool(t, "qemu-img", "compare", "-f", "vmdk", "-F", "raw", inner, ovaRaw)

	vhd := path("azure")
	// qemu-img 7.2 has no consistency check for vpc: it says so (exit 63). info reads the
	// footer, compare the disk.
	if o, err := exec.Command("qemu-img", "check", "-f", "vpc", vhd).CombinedOutput(); err != nil && !strings.Contains(string(o), "does not support checks") {
		t.Fatalf("qemu-img check %s: %v\n%s", vhd, err, o)
	}
	if info := tool(t, "qemu-img", "info", "-f", "vpc", vhd); !strings.Contains(info, "file format: vpc") {
		t.Fatalf("qemu-img info %s:\n%s", vhd, info)
	}
	tool(t, "qemu-img", "compare", "-f", "vpc", "-F", "raw", vhd, rawOf("azure", "vpc"))

	gcp := path("gcp")
	if m := tool(t, "tar", "tvf", gcp); !strings.Contains(m, "disk.raw") {
		t.Fatalf("tar tvf %s does not list disk.raw:\n%s", gcp, m)
	}
	gcpDir, gcpOrig := filepath.Join(dir, "gcp"), filepath.Join(dir, "gcp-orig")
	tool(t, "mkdir", gcpDir, gcpOrig)
	tool(t, "tar", "xSf", gcp, "-C", gcpDir)
	tool(t, "tar", "xSf", orig[find(t, sm, "gcp").Name], "-C", gcpOrig)
	tool(t, "qemu-img", "compare", "-f", "raw", "-F", "raw", filepath.Join(gcpDir, "disk.raw"), filepath.Join(gcpOrig, "disk.raw"))

	checkPlatformIDs(t, ref, out, sm, orig)
}

// checkPlatformIDs reads the platform id of every rehydrated disk (and of the shipped
// originals) with `platformid`, and of every disk in the image with `list --check`.
func checkPlatformIDs(t *testing.T, ref, out string, sm *streammeta.Release, orig map[string]string) {
	t.Helper()
	check := string(mustRun(t, "list", "--check", "--image", ref, "--tmpdir", t.TempDir()))
	n := 0
	for _, a := range sm.Artifacts {
		if a.Kind != streammeta.KindDisk || a.IsISO() {
			continue
		}
		want := fixtures.PlatformID(a.DiskName())
		for _, p := range []string{filepath.Join(out, a.Name), orig[a.Name]} {
			if got := strings.TrimSpace(string(mustRun(t, "platformid", p))); got != want {
				t.Errorf("platformid %s: %q, want %q", p, got, want)
			}
		}
		found := false
		for _, l := range strings.Split(check, "\n") {
			if strings.Contains(l, a.Name) {
				found = strings.HasPrefix(l, want+" ")
			}
		}
		if !found {
			t.Errorf("list --check does not show %s with platform id %s:\n%s", a.Name, want, check)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("checked %d disks, the release has more", n)
	}
	zeros := filepath.Join(t.TempDir(), "zeros.raw")
	if err := os.WriteFile(zeros, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	mustFail(t, nil, "no GPT", "platformid", zeros)
	mustFail(t, nil, "no such file", "platformid", zeros+".missing")
	mustFail(t, nil, "exactly one DISK", "platformid")
}

package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/tests/fixtures"
)

// The live ISO is stored as a delta to the ISO with its squashfs blocks expanded (the squashfs
// holds the same root tree as the disk) from a synthetic base that lays the baseline's files
// out where the expanded ISO has them (filemap), and rehydrated by compressing those blocks
// again; the PXE files are pieces of it. The target: the ISO costs at most 10% of its
// size in the image, the PXE files nothing.
func TestLiveISOFromBaseline(t *testing.T) {
	opt := fixtures.TestOptions()
	opt.Platforms = []string{"qemu", "metal", "live"}
	rel, sm := release(t, opt)
	work := t.TempDir()
	ref := "oci:" + filepath.Join(work, "layout") + ":live"
	report := filepath.Join(work, "report.json")
	mustRun(t, "build", rel.Dir, "--output", ref, "--level", "3", "-q", "--report", report)

	rep := readReport(t, report)
	var iso string
	for _, a := range rep.Artifacts {
		switch {
		case strings.HasSuffix(a.Name, ".iso"):
			iso = a.Name
			if a.Method != "qcow2-decode+filemap+delta+gzip-spans+zstd-restore" {
				t.Errorf("ISO stored as %q, want a delta from the baseline's files laid out as the ISO has them, its initramfs's gzip rebuilt, its squashfs blocks restored", a.Method)
			}
			if a.LayerBytes*10 > a.Size {
				t.Errorf("ISO costs %d bytes in the image, more than 10%% of its %d", a.LayerBytes, a.Size)
			}
			t.Logf("ISO: %d of %d bytes in the image (%.1f%%)", a.LayerBytes, a.Size, 100*float64(a.LayerBytes)/float64(a.Size))
		case strings.Contains(a.Name, "-live-"):
			if a.LayerBytes != 0 || !strings.HasPrefix(a.Method, "extract from") {
				t.Errorf("%s: %s, %d bytes in the image; want an extract of the ISO costing nothing", a.Name, a.Method, a.LayerBytes)
			}
		}
	}
	if iso == "" {
		t.Fatal("the release has no ISO")
	}

	out := t.TempDir()
	mustRun(t, "rehydrate", out, "--iso", "--pxe", "--image", ref)
	n := 0
	for _, a := range sm.Artifacts {
		if !a.IsISO() && !a.IsPXE() {
			continue
		}
		n++
		if got := fileSHA(t, filepath.Join(out, a.Name)); got != a.UncompressedSHA256 {
			t.Fatalf("%s: sha256 %s, stream metadata says %s", a.Name, got, a.UncompressedSHA256)
		}
	}
	if n != 4 {
		t.Fatalf("rehydrated %d live files, want the ISO and 3 PXE files", n)
	}
	// xorriso sees the same tree in the rehydrated ISO as in the shipped one.
	want := tool(t, "xorriso", "-indev", filepath.Join(rel.Dir, iso), "-find", "/", "-exec", "lsdl")
	got := tool(t, "xorriso", "-indev", filepath.Join(out, iso), "-find", "/", "-exec", "lsdl")
	if clean(got) != clean(want) || !strings.Contains(got, "rootfs.img") {
		t.Fatalf("xorriso lists another tree in the rehydrated ISO:\n%s\nwant:\n%s", clean(got), clean(want))
	}
}

// clean keeps xorriso's listing lines, without the lines that name the image file.
func clean(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "xorriso") || strings.Contains(l, "libisofs") || strings.Contains(l, "Drive current") ||
			strings.Contains(l, "Media current") || strings.Contains(l, "Media status") || strings.Contains(l, "Media summary") ||
			strings.Contains(l, "Volume id") || strings.Contains(l, "Boot record") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

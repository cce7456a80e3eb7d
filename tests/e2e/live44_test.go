package e2e

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rehydrator/rehydrator/tests/fixtures"
)

// The live ISO of Fedora 42 and later holds root.erofs (LZMA clusters) in its rootfs.img cpio.
// The ISO is stored as a delta from the baseline's guest view to the ISO with those clusters
// expanded, and rehydrated by compressing them again (erofs-restore); the PXE files are pieces
// of it. Issue 12's target: the ISO costs at most 10% of its size in the image, the PXE files
// nothing, and both come back bit for bit from an OCI layout.
func TestLive44FromBaseline(t *testing.T) {
	opt := fixtures.TestOptions44()
	opt.Platforms = []string{"live", "metal", "metal4k", "qemu"} // the live fixture's own set: one cached build
	rel, sm := release(t, opt)
	work := t.TempDir()
	ref := "oci:" + filepath.Join(work, "layout") + ":live44"
	report := filepath.Join(work, "report.json")
	start := time.Now()
	mustRun(t, "build", rel.Dir, "--output", ref, "--level", "1", "-q", "--report", report)
	t.Logf("build (self-checked): %s", time.Since(start).Round(time.Second))

	rep := readReport(t, report)
	var iso string
	for _, a := range rep.Artifacts {
		switch {
		case strings.HasSuffix(a.Name, ".iso"):
			iso = a.Name
			if !strings.HasSuffix(a.Method, "erofs-restore") {
				t.Errorf("ISO stored as %q, want a delta from the baseline with its EROFS clusters restored", a.Method)
			}
			if a.LayerBytes*10 > a.Size {
				t.Errorf("ISO costs %d bytes in the image, more than 10%% of its %d", a.LayerBytes, a.Size)
			}
			t.Logf("ISO: %s, %d of %d bytes in the image (%.1f%%)", a.Method, a.LayerBytes, a.Size, 100*float64(a.LayerBytes)/float64(a.Size))
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
	start = time.Now()
	mustRun(t, "rehydrate", out, "--iso", "--pxe", "--image", ref, "--tmpdir", t.TempDir())
	t.Logf("rehydrate --iso --pxe: %s", time.Since(start).Round(time.Second))
	var names []string
	for _, a := range sm.Artifacts {
		if !a.IsISO() && !a.IsPXE() {
			continue
		}
		names = append(names, a.Name)
		if got := fileSHA(t, filepath.Join(out, a.Name)); got != a.UncompressedSHA256 {
			t.Fatalf("%s: sha256 %s, stream metadata says %s", a.Name, got, a.UncompressedSHA256)
		}
	}
	if len(names) != 4 {
		t.Fatalf("rehydrated %v, want the ISO and 3 PXE files", names)
	}
	sort.Strings(names)
	assertOnly(t, out, names...)
}

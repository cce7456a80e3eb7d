package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/tests/fixtures"
)

// metal4k is made by its own pipeline (4096-byte sectors, its own mkfs, the files copied again in
// another order), so its file data sits elsewhere than in the baseline. The target: it
// costs at most 2% of its size in the image, and rehydrates bit for bit from an OCI layout.
func TestMetal4kAnyOrder(t *testing.T) {
	opt := fixtures.TestOptions()
	opt.Profile = fixtures.ProfileFCOS44
	opt.Platforms = []string{"qemu", "metal4k"}
	rel, sm := release(t, opt)
	work := t.TempDir()
	ref := "oci:" + filepath.Join(work, "layout") + ":m4k"
	report := filepath.Join(work, "report.json")
	mustRun(t, "build", rel.Dir, "--output", ref, "--level", "3", "-q", "--report", report)

	var rep struct {
		Artifacts []struct {
			Name, Method                  string
			Size, LayerBytes, RecipeBytes int64
		} `json:"artifacts"`
	}
	js, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	a := find(t, sm, "metal4k")
	var found bool
	for _, r := range rep.Artifacts {
		if r.Name != a.Name {
			continue
		}
		found = true
		cost := r.LayerBytes + r.RecipeBytes
		t.Logf("%s: %s, %d of %d bytes in the image (%.3f%%)", r.Name, r.Method, cost, r.Size, 100*float64(cost)/float64(r.Size))
		if r.Method != "qcow2-decode+delta" || cost*50 > r.Size {
			t.Errorf("%s stored as %s costing %d bytes; want a delta from the baseline of at most 2%% of %d", r.Name, r.Method, cost, r.Size)
		}
	}
	if !found {
		t.Fatalf("the report has no %s:\n%s", a.Name, js)
	}

	out := t.TempDir()
	mustRun(t, "rehydrate", out, "--disk", "metal4k", "--image", ref, "--tmpdir", t.TempDir())
	if got := fileSHA(t, filepath.Join(out, a.Name)); got != a.UncompressedSHA256 {
		t.Fatalf("%s: sha256 %s, stream metadata says %s", a.Name, got, a.UncompressedSHA256)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 1 || strings.HasPrefix(entries[0].Name(), ".") {
		t.Fatalf("rehydrate left %v in the output directory", entries)
	}
}

package e2e

import (
	"encoding/json"
	"os"
	"testing"
)

// checkMetal4kCost reads build's report and fails unless metal4k (name) is a delta from the
// baseline costing at most 2% of its size.
func checkMetal4kCost(t *testing.T, report, name string) {
	t.Helper()
	rep := readReport(t, report)
	for _, r := range rep.Artifacts {
		if r.Name != name {
			continue
		}
		cost := r.LayerBytes + r.RecipeBytes
		t.Logf("%s: %s, %d of %d bytes in the image (%.3f%%)", r.Name, r.Method, cost, r.Size, 100*float64(cost)/float64(r.Size))
		if r.Method != "qcow2-decode+delta" || cost*50 > r.Size {
			t.Errorf("%s stored as %s costing %d bytes; want a delta from the baseline of at most 2%% of %d", r.Name, r.Method, cost, r.Size)
		}
		return
	}
	t.Fatalf("the report %s has no %s", report, name)
}

// buildReport is what the e2e tests read of `build --report`.
type buildReport struct {
	Artifacts []struct {
		Name, Method                  string
		Size, LayerBytes, RecipeBytes int64
	} `json:"artifacts"`
}

// readReport reads the report build wrote to path.
func readReport(t *testing.T, path string) *buildReport {
	t.Helper()
	js, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep buildReport
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	return &rep
}

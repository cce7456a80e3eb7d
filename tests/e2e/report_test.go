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
	t.Fatalf("the report has no %s:\n%s", name, js)
}

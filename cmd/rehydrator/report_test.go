package main

import (
	"strings"
	"testing"
)

// The build's closing table gives each artifact's route, its cost in the image (layers and
// recipe parameters) and that cost as a share of its size.
func TestReportPrintsCostAndShare(t *testing.T) {
	r := &buildReport{Artifacts: []artifactReport{
		{Name: "fcos-aws.vmdk", Method: "qcow2-decode+delta+vmdk-encode", Size: 1 << 30, LayerBytes: 1 << 20, RecipeBytes: 48 << 10},
		{Name: "empty", Method: "whole"},
	}}
	var b strings.Builder
	r.print(&b)
	out := b.String()
	for _, want := range []string{"route", "% of size", "qcow2-decode+delta+vmdk-encode", "0.102%", "1.0 MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(strings.Split(out, "\n")[2], "-") {
		t.Errorf("an empty artifact's share should be '-':\n%s", out)
	}
}

package rehydrate

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/qcow2"
)

var update = flag.Bool("update", false, "rewrite testdata/every-op.* from this code (only on purpose)")

// everyOpRecipe is a recipe with a step of every op (made only of the exported API, so that the
// code of any version builds it the same way).
func everyOpRecipe(t *testing.T) *Recipe {
	r := newFixture(t).recipe
	guest := bytes.Repeat([]byte("guest..."), 1<<14)
	l, err := qcow2.PlanConvert(bytes.NewReader(guest), int64(len(guest)), &qcow2.ConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	base := r.Artifacts[0].Steps[0].Blob
	r.Artifacts = append(r.Artifacts, Artifact{ID: "x86_64/qemu/qcow2/disk", Arch: "x86_64", Platform: "qemu", Format: "qcow2", Kind: "disk",
		Name: "q.qcow2", Size: l.FileSize, SHA256: strings.Repeat("1", 64),
		Steps: []Step{{Op: OpBlob, Blob: base}, {Op: OpX86Decode}, {Op: OpQcow2Decode}, mustStep(t, OpQcow2Encode, l), {Op: OpZstdRestore}}})
	for i, c := range formatCases(t) {
		r.Artifacts = append(r.Artifacts, Artifact{ID: "x86_64/" + c.name + "/f/disk", Arch: "x86_64", Name: "f" + string(rune('a'+i)),
			Size: int64(len(c.file)), SHA256: hexOf(c.file), Steps: []Step{{Op: OpRef, Ref: r.Artifacts[0].ID}, c.step}})
	}
	r.DeclareFeatures()
	return r
}

// A recipe with every op, as the rehydrator before the step registry wrote it, parses, marshals
// to the same bytes, renders its steps the same and needs the same blobs: recipes do not change.
func TestEveryOpRecipeUnchanged(t *testing.T) {
	r := everyOpRecipe(t)
	doc, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var steps strings.Builder
	for _, a := range r.Artifacts {
		for _, s := range a.Steps {
			steps.WriteString(s.String() + "\n")
		}
		steps.WriteString(strings.Join(r.BlobsFor(a.ID), " ") + "\n")
	}
	if *update {
		os.WriteFile("testdata/every-op.recipe.json", doc, 0o644)
		os.WriteFile("testdata/every-op.steps.txt", []byte(steps.String()), 0o644)
	}
	oldDoc, err := os.ReadFile("testdata/every-op.recipe.json")
	if err != nil {
		t.Fatal(err)
	}
	oldSteps, err := os.ReadFile("testdata/every-op.steps.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, oldDoc) {
		t.Fatal("the recipe with every op marshals differently from testdata/every-op.recipe.json")
	}
	if steps.String() != string(oldSteps) {
		t.Fatalf("steps render or BlobsFor differ from testdata/every-op.steps.txt:\n%s", steps.String())
	}
	parsed, err := ParseRecipe(oldDoc)
	if err != nil {
		t.Fatalf("the old recipe does not parse: %v", err)
	}
	again, _ := parsed.Marshal()
	if !bytes.Equal(again, oldDoc) {
		t.Fatal("the old recipe does not marshal back to its bytes")
	}
}

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rehydrator/rehydrator/ociimage"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/tests/fixtures"
	"github.com/rehydrator/rehydrator/tests/synthroot"
)

// goldenEnv, set to 1, makes TestGoldenImage write what it finds into its golden file instead
// of comparing: for a deliberate change of the image.
const goldenEnv = "REHYDRATOR_UPDATE_GOLDEN"

const goldenFile = "testdata/golden-every-platform.json"

// goldenTree is the root filesystem's content: generated, so that the release depends on the
// tool versions (Debian 12's qemu-img, mkfs, xz, ...) and not on this machine's /usr.
var goldenTree = synthroot.Spec{Name: "golden", Seed: 1, Bytes: 56 << 20}

// golden is what the golden file holds: the digests of everything in the image but the tool
// layer (the binary) and the config (which names the tool layer).
type golden struct {
	Comment string `json:"comment"`
	// Release is the SHA-256 of the fixture release's stream.json, which names every shipped
	// file's digest: when it differs, the fixture builder or the machine's tools changed, not
	// the rehydrator.
	Release   string `json:"release"`
	Generator string `json:"generator"`
	// Recipe is the SHA-256 of rehydrator.json, byte for byte.
	Recipe   string `json:"recipe"`
	Metadata string `json:"metadataLayer"`
	// Layers maps each blob of the recipe to the digest of the layer that carries it.
	Layers map[string]string `json:"blobLayers"`
	// Steps maps each artifact to its steps, for the reader of a diff.
	Steps map[string]string `json:"steps"`
}

func goldenOptions(t *testing.T) fixtures.Options {
	t.Helper()
	roots, err := synthroot.Roots(goldenTree)
	if err != nil {
		t.Fatal(err)
	}
	opt := fixtures.TestOptions()
	opt.Platforms = fixtures.AllPlatforms
	opt.SourceRoots = roots
	return opt
}

// TestGoldenImage builds the small every-platform release from a generated tree and checks the
// image's recipe, metadata layer and every blob layer against digests checked into the
// repository: a refactoring must not change what build makes. The layers are compressed with
// the Go zstd encoder (--level 3; the version is pinned by go.mod), not the zstd program.
func TestGoldenImage(t *testing.T) {
	start := time.Now()
	rel, _ := release(t, goldenOptions(t))
	t.Logf("fixture release ready in %s", time.Since(start).Round(time.Millisecond))
	dir := filepath.Join(t.TempDir(), "layout")
	ref := "oci:" + dir + ":golden"
	start = time.Now()
	mustRun(t, "build", rel.Dir, "--output", ref, "--level", "3", "-q")
	t.Logf("build took %s", time.Since(start).Round(time.Millisecond))

	got := readGolden(t, rel, ref, dir)
	if os.Getenv(goldenEnv) == "1" {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(goldenFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", goldenFile)
		return
	}
	raw, err := os.ReadFile(goldenFile)
	if err != nil {
		t.Fatalf("%v (make it with %s=1 go test ./tests/e2e -run TestGoldenImage)", err, goldenEnv)
	}
	var want golden
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatalf("%s: %v", goldenFile, err)
	}
	how := fmt.Sprintf("if the change is deliberate, rewrite the file with %s=1 go test ./tests/e2e -run TestGoldenImage and commit it with the reason", goldenEnv)
	if got.Release != want.Release {
		t.Fatalf("the fixture release differs from the one the golden digests were made from (stream.json sha256 %s, want %s): the fixture builder changed or this machine's tools (qemu-img, mkfs, xz, ...) are not Debian 12's; not a change of the rehydrator. %s", got.Release, want.Release, how)
	}
	var diffs []string
	if got.Generator != want.Generator {
		diffs = append(diffs, fmt.Sprintf("recipe generator %q, want %q", got.Generator, want.Generator))
	}
	if got.Recipe != want.Recipe {
		diffs = append(diffs, fmt.Sprintf("rehydrator.json %s, want %s", got.Recipe, want.Recipe))
		// The steps as Step.String shows them say where; they are not compared otherwise, as
		// their rendering may change without the recipe changing.
		for _, id := range sortedKeys(want.Steps, got.Steps) {
			if got.Steps[id] != want.Steps[id] {
				diffs = append(diffs, fmt.Sprintf("%s: steps %s, want %s", id, got.Steps[id], want.Steps[id]))
			}
		}
	}
	if got.Metadata != want.Metadata {
		diffs = append(diffs, fmt.Sprintf("metadata layer %s, want %s", got.Metadata, want.Metadata))
	}
	for _, b := range sortedKeys(want.Layers, got.Layers) {
		if got.Layers[b] != want.Layers[b] {
			diffs = append(diffs, fmt.Sprintf("layer of blob %s: %q, want %q", b, got.Layers[b], want.Layers[b]))
		}
	}
	if len(diffs) > 0 {
		t.Fatalf("the image differs from the golden digests in %s:\n  %s\n%s", goldenFile, strings.Join(diffs, "\n  "), how)
	}
	t.Logf("recipe, metadata layer and %d blob layers as in %s", len(got.Layers), goldenFile)
}

func readGolden(t *testing.T, rel *fixtures.Release, ref, dir string) golden {
	t.Helper()
	stream, err := os.ReadFile(rel.StreamPath)
	if err != nil {
		t.Fatal(err)
	}
	src, err := ociimage.Open(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	recipeJSON, _, err := src.Metadata(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r, err := rehydrate.ParseRecipe(recipeJSON)
	if err != nil {
		t.Fatal(err)
	}
	g := golden{
		Comment:   "Digests of the image build makes of the small every-platform fixture release (generated root tree, see golden_test.go). Rewrite with REHYDRATOR_UPDATE_GOLDEN=1 only for a deliberate change.",
		Release:   sha256hex(stream),
		Generator: r.Generator,
		Recipe:    sha256hex(recipeJSON),
		Layers:    map[string]string{},
		Steps:     map[string]string{},
	}
	for _, a := range r.Artifacts {
		var s []string
		for _, st := range a.Steps {
			s = append(s, st.String())
		}
		g.Steps[a.ID] = strings.Join(s, " | ")
	}
	layers := layerDigests(t, dir)
	g.Metadata = layers["metadata"]
	for _, b := range r.Blobs {
		g.Layers[b.Digest] = layers[b.Digest]
	}
	// The generator must not carry a commit or a date, or the recipe would differ by commit.
	if !bytes.Equal(bytes.TrimSpace([]byte(r.Generator)), []byte("rehydrator dev")) {
		t.Errorf("recipe generator %q: the test binary is built without -X main.version, want \"rehydrator dev\"", r.Generator)
	}
	return g
}

func sortedKeys(a, b map[string]string) []string {
	set := map[string]bool{}
	for k := range a {
		set[k] = true
	}
	for k := range b {
		set[k] = true
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

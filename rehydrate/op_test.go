package rehydrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// badParams are steps with parameters their op must refuse, one for every op that has any.
var badParams = map[string]Step{
	OpBlob:            {Op: OpBlob, Blob: "sha256:nothex"},
	OpPatch:           {Op: OpPatch, Blob: "md5:0"},
	OpFilemap:         {Op: OpFilemap, Blob: "sha256:0"},
	OpRef:             {Op: OpRef},
	OpExtract:         {Op: OpExtract, Offset: -1, Length: 4},
	OpQcow2Encode:     {Op: OpQcow2Encode, Params: json.RawMessage(`{"fileSize":"big"}`)},
	OpVMDKEncode:      {Op: OpVMDKEncode, Params: json.RawMessage(`{"header":7}`)},
	OpOVA:             {Op: OpOVA, Params: json.RawMessage(`{"disk":"disk.vmdk"}`)},
	OpVHDFixed:        {Op: OpVHDFixed, Params: json.RawMessage(`{"dataSize":512}`)},
	OpSparseTar:       {Op: OpSparseTar, Params: json.RawMessage(`{}`)},
	OpVHDXDynamic:     {Op: OpVHDXDynamic, Params: json.RawMessage(`{"fileSize":4096,"chunks":[]}`)},
	OpGzip:            {Op: OpGzip, Blob: "sha256:nothex"},
	OpZip:             {Op: OpZip, Params: json.RawMessage(`{"head":"","dataSize":-1,"tail":""}`)},
	OpOCIArchive:      {Op: OpOCIArchive, Params: json.RawMessage(`{"members":[],"end":512}`)},
	OpQcow2Compressed: {Op: OpQcow2Compressed, Blob: "sha256:0"},
	OpVMDKGrains:      {Op: OpVMDKGrains, Blob: "sha256:nothex", Params: json.RawMessage(`{"header":7}`)},
	OpEROFS:           {Op: OpEROFS, Params: json.RawMessage(`{"images":[]}`)},
	OpGzipSpans:       {Op: OpGzipSpans, Blob: "sha256:0", Params: json.RawMessage(`{"spans":[]}`)},
}

// noParamOps are the ops without parameters: any step of theirs is valid.
var noParamOps = []string{OpQcow2Decode, OpX86Decode, OpZstdRestore}

func TestRegistry(t *testing.T) {
	if got, want := features(), slices.Sorted(func(yield func(string) bool) {
		for name := range ops {
			if !yield(name) {
				return
			}
		}
	}); !slices.Equal(got, want) || len(got) == 0 {
		t.Fatalf("features() = %v, want the registered ops %v", got, want)
	}
	for name, o := range ops {
		if name == "" || o.name != name || o.params == nil || o.apply == nil {
			t.Errorf("op %q: registered without a name, parameters or apply", name)
		}
		if s := (Step{Op: name}).String(); !strings.HasPrefix(s, name) {
			t.Errorf("op %q renders as %q", name, s)
		}
		bad, hasParams := badParams[name]
		if !hasParams {
			if !slices.Contains(noParamOps, name) {
				t.Errorf("op %q: no bad-params example in badParams (or list it in noParamOps)", name)
				continue
			}
			if _, _, err := (&Step{Op: name}).decode(); err != nil {
				t.Errorf("op %q has no parameters, but a bare step is refused: %v", name, err)
			}
			continue
		}
		_, _, err := bad.decode()
		if !errors.Is(err, ErrBadRecipe) || !strings.Contains(err.Error(), name+" params") {
			t.Errorf("op %q accepts %+v (%v), want an invalid recipe naming %q", name, bad, err, name+" params")
		}
	}
	// An op that is not registered is an unknown feature, both to ParseRecipe and to the engine.
	if _, _, err := (&Step{Op: "vhdx-encode"}).decode(); !errors.Is(err, ErrUnknownFeature) {
		t.Errorf("unregistered op: %v, want ErrUnknownFeature", err)
	}
	doc := `{"schemaVersion":1,"requiredFeatures":["blob","vhdx-encode"],"blobs":[],"artifacts":[]}`
	if _, err := ParseRecipe([]byte(doc)); !errors.Is(err, ErrUnknownFeature) || !strings.Contains(err.Error(), "vhdx-encode") {
		t.Errorf("ParseRecipe with an unregistered feature: %v", err)
	}
}

// The engine takes the parameters Recipe.Validate decoded, and decodes those of steps built in Go
// (which no Validate has seen) itself; a step changed after Validate is decoded again.
func TestParamsDecodedOnce(t *testing.T) {
	f := newFixture(t)
	doc, _ := f.recipe.Marshal()
	r, err := ParseRecipe(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range r.Artifacts {
		for _, s := range a.Steps {
			if s.cache == nil || !s.cache.matches(&s) {
				t.Fatalf("%s: step %s has no decoded parameters after ParseRecipe", a.ID, s)
			}
		}
	}
	again, _ := r.Marshal()
	if string(again) != string(doc) {
		t.Fatal("the decoded parameters changed the recipe's JSON")
	}
	s := r.Artifacts[0].Steps[0]
	s.Blob = "sha256:" + strings.Repeat("0", 64)
	if _, p, err := s.decode(); err != nil || p.(blobParams).Digest != s.Blob {
		t.Fatalf("a changed step decoded to %v, %v: the cache was used", p, err)
	}
}

// A delta larger than what is kept in memory is read into a temporary file first, which goes
// away with the rehydration.
func TestLargeSideBlobSpooled(t *testing.T) {
	f := newFixture(t)
	defer func(n int64) { sideInMemory = n }(sideInMemory)
	sideInMemory = 16
	dir := t.TempDir()
	eng := NewEngine(f.recipe, f.blobs, dir)
	defer eng.Close()
	var out bytes.Buffer
	if err := eng.Rehydrate(context.Background(), "x86_64/openstack/qcow2.xz/disk", &out, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), f.target) {
		t.Fatal("openstack.qcow2 differs with its delta spooled")
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("%d files left in the temporary directory", len(left))
	}
}

// loggedBlobs records when blobs are opened and closed.
type loggedBlobs struct {
	memBlobs
	mu  sync.Mutex
	log []string
}

func (l *loggedBlobs) OpenBlob(ctx context.Context, d string) (io.ReadCloser, error) {
	rc, err := l.memBlobs.OpenBlob(ctx, d)
	if err != nil {
		return nil, err
	}
	l.add("open " + d)
	return readCloser{rc, closerFunc(func() { l.add("close " + d) })}, nil
}

func (l *loggedBlobs) add(s string) {
	l.mu.Lock()
	l.log = append(l.log, s)
	l.mu.Unlock()
}

// A patch's delta is read and its reader closed before the baseline opens: each stream of a
// zstd layer holds a decoder window of up to 128 MiB, and two at once doubled the peak memory
// (BENCHMARKS.md, "Peak memory of each rehydrate route").
func TestDeltaClosedBeforeBaseOpens(t *testing.T) {
	f := newFixture(t)
	src := &loggedBlobs{memBlobs: f.blobs}
	eng := NewEngine(f.recipe, src, t.TempDir())
	defer eng.Close()
	var out bytes.Buffer
	if err := eng.Rehydrate(context.Background(), "x86_64/openstack/qcow2.xz/disk", &out, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), f.target) {
		t.Fatal("wrong bytes")
	}
	base, dlt := f.recipe.Blobs[0].Digest, f.recipe.Blobs[1].Digest
	want := []string{"open " + dlt, "close " + dlt, "open " + base}
	if len(src.log) < 3 || !slices.Equal(src.log[:3], want) {
		t.Fatalf("blob log %q, want it to start with %q", src.log, want)
	}
}

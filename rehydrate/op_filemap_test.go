package rehydrate

import (
	"bytes"
	"context"
	"math/rand"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/filemap"
)

// filemapRecipe is blob(base) -> filemap(map) -> patch(delta): the target made from a base
// whose pieces the map moves to where the target has them, as the live ISO route does.
func filemapRecipe(t *testing.T, base, target, mapBlob []byte, m *filemap.Map) (*Recipe, memBlobs) {
	t.Helper()
	var d bytes.Buffer
	if m != nil {
		syn := filemap.NewReader(bytes.NewReader(base), m)
		if _, err := delta.Compute(syn, syn.Size(), bytes.NewReader(target), int64(len(target)), &d, delta.Options{AnyOrder: true}); err != nil {
			t.Fatal(err)
		}
	} else {
		d.WriteString("not used")
	}
	blobs := memBlobs{digestOf(base): base, digestOf(mapBlob): mapBlob, digestOf(d.Bytes()): d.Bytes()}
	r := &Recipe{SchemaVersion: SchemaVersion,
		Blobs: []Blob{{Digest: digestOf(base), Size: int64(len(base))}, {Digest: digestOf(mapBlob), Size: int64(len(mapBlob))},
			{Digest: digestOf(d.Bytes()), Size: int64(d.Len())}},
		Artifacts: []Artifact{{ID: "x86_64/metal/iso/disk", Arch: "x86_64", Platform: "metal", Format: "iso", Kind: "disk", Name: "live.iso",
			Size: int64(len(target)), SHA256: hexOf(target),
			Steps: []Step{{Op: OpBlob, Blob: digestOf(base)}, {Op: OpFilemap, Blob: digestOf(mapBlob)}, {Op: OpPatch, Blob: digestOf(d.Bytes())}}}}}
	r.DeclareFeatures()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	return r, blobs
}

func TestFilemapOp(t *testing.T) {
	rng := rand.New(rand.NewSource(12))
	base := make([]byte, 1<<20)
	rng.Read(base)
	// The target holds three small "files" of the base, far apart and out of order, between
	// bytes of its own.
	target := make([]byte, 300<<10)
	rng.Read(target)
	copy(target[1000:], base[900<<10:900<<10+700])
	copy(target[100<<10:], base[5<<10:5<<10+3000])
	copy(target[200<<10:], base[500<<10:500<<10+50<<10])
	m := &filemap.Map{Size: int64(len(target)), Tail: int64(len(base)), Runs: []filemap.Run{
		{Target: 1000, Base: 900 << 10, Length: 700}, {Target: 100 << 10, Base: 5 << 10, Length: 3000}, {Target: 200 << 10, Base: 500 << 10, Length: 50 << 10}}}
	enc, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	r, blobs := filemapRecipe(t, base, target, enc, m)
	eng := NewEngine(r, blobs, t.TempDir())
	defer eng.Close()
	var out bytes.Buffer
	if err := eng.Rehydrate(context.Background(), r.Artifacts[0].ID, &out, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), target) {
		t.Fatal("rehydrated output differs from the target")
	}
	if s := r.Artifacts[0].Steps[1].String(); !strings.HasPrefix(s, "filemap(sha256:") {
		t.Errorf("step renders as %q", s)
	}
}

// A map blob that is not a map, or one for a larger baseline, fails the step with one line
// that says what is wrong.
func TestFilemapOpBadMap(t *testing.T) {
	base := bytes.Repeat([]byte("base"), 1000)
	target := []byte("target")
	long := &filemap.Map{Size: 6, Tail: int64(len(base)) + 1}
	longEnc, _ := long.MarshalBinary()
	for _, c := range []struct {
		name, want string
		blob       []byte
	}{
		{"not a map", "no \"RHFMAP\" magic", []byte("garbage, not a map")},
		{"truncated", "1 runs in 0 bytes", []byte("RHFMAP\x01\x06\x00\x01")},
		{"other baseline", "appends 4001 base bytes, but the base has 4000", longEnc},
	} {
		r, blobs := filemapRecipe(t, base, target, c.blob, nil)
		eng := NewEngine(r, blobs, t.TempDir())
		err := eng.Rehydrate(context.Background(), r.Artifacts[0].ID, &bytes.Buffer{}, nil)
		eng.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", c.name, err, c.want)
		}
	}
}

package rehydrate

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rehydrator/rehydrator/delta"
)

// memBlobs is an in-memory BlobSource (no BlobPather, so steps see streams like from a registry).
type memBlobs map[string][]byte

func (m memBlobs) OpenBlob(_ context.Context, d string) (io.ReadCloser, error) {
	b, ok := m[d]
	if !ok {
		return nil, fmt.Errorf("no blob %s", d)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func hexOf(b []byte) string { return strings.TrimPrefix(digestOf(b), "sha256:") }

// fixture: a base, a target that differs in a few bytes, and a recipe with both.
type fixture struct {
	recipe       *Recipe
	blobs        memBlobs
	base, target []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	base := make([]byte, 3<<20+123)
	rng.Read(base[:1<<20])
	target := bytes.Clone(base)
	copy(target[5000:], "ignition.platform.id=openstack")
	target[2<<20] = 7
	var d bytes.Buffer
	if _, err := delta.Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &d, delta.Options{}); err != nil {
		t.Fatal(err)
	}
	blobs := memBlobs{digestOf(base): base, digestOf(d.Bytes()): d.Bytes()}
	r := &Recipe{SchemaVersion: SchemaVersion,
		Blobs: []Blob{{Digest: digestOf(base), Size: int64(len(base))}, {Digest: digestOf(d.Bytes()), Size: int64(d.Len())}},
		Artifacts: []Artifact{
			{ID: "x86_64/qemu/qcow2.xz/disk", Arch: "x86_64", Platform: "qemu", Format: "qcow2.xz", Kind: "disk", Name: "qemu.qcow2", Disk: "qemu",
				Size: int64(len(base)), SHA256: hexOf(base), Steps: []Step{{Op: OpBlob, Blob: digestOf(base)}}},
			{ID: "x86_64/openstack/qcow2.xz/disk", Arch: "x86_64", Platform: "openstack", Format: "qcow2.xz", Kind: "disk", Name: "openstack.qcow2", Disk: "openstack",
				Size: int64(len(target)), SHA256: hexOf(target), Steps: []Step{{Op: OpRef, Ref: "x86_64/qemu/qcow2.xz/disk"}, {Op: OpPatch, Blob: digestOf(d.Bytes())}}},
			{ID: "x86_64/metal/pxe/kernel", Arch: "x86_64", Platform: "metal", Format: "pxe", Kind: "kernel", Name: "kernel",
				Size: 1000, SHA256: hexOf(base[100:1100]), Steps: []Step{{Op: OpBlob, Blob: digestOf(base)}, {Op: OpExtract, Offset: 100, Length: 1000}}},
		}}
	r.DeclareFeatures()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	return &fixture{recipe: r, blobs: blobs, base: base, target: target}
}

func TestRehydrateEveryArtifact(t *testing.T) {
	f := newFixture(t)
	eng := NewEngine(f.recipe, f.blobs, t.TempDir())
	defer eng.Close()
	want := map[string][]byte{"qemu.qcow2": f.base, "openstack.qcow2": f.target, "kernel": f.base[100:1100]}
	for _, a := range f.recipe.Artifacts {
		var out bytes.Buffer
		if err := eng.Rehydrate(context.Background(), a.ID, &out, nil); err != nil {
			t.Fatalf("%s: %v", a.ID, err)
		}
		if !bytes.Equal(out.Bytes(), want[a.Name]) {
			t.Fatalf("%s: wrong bytes", a.Name)
		}
	}
}

func TestRecipeRoundTripAndParse(t *testing.T) {
	f := newFixture(t)
	data, err := f.recipe.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRecipe(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Artifacts) != 3 || r.RequiredFeatures[0] != OpBlob {
		t.Fatalf("round trip lost data: %+v", r)
	}
	if got := r.BlobsFor("x86_64/openstack/qcow2.xz/disk"); len(got) != 2 {
		t.Fatalf("BlobsFor openstack = %v, want base and delta", got)
	}
	if got := r.BlobsFor("x86_64/qemu/qcow2.xz/disk"); len(got) != 1 {
		t.Fatalf("BlobsFor qemu = %v, want only the base", got)
	}
}

func TestParseRecipeRejects(t *testing.T) {
	f := newFixture(t)
	good, _ := f.recipe.Marshal()
	mutate := func(fn func(r *Recipe)) []byte {
		r, err := ParseRecipe(good)
		if err != nil {
			t.Fatal(err)
		}
		fn(r)
		b, _ := r.Marshal()
		return b
	}
	cases := []struct {
		name string
		data []byte
		want error
		msg  string
	}{
		{"not json", []byte("{"), ErrBadRecipe, "invalid recipe"},
		{"unknown mandatory feature", mutate(func(r *Recipe) { r.RequiredFeatures = append(r.RequiredFeatures, "vmdk-encode-v9") }), ErrUnknownFeature, "vmdk-encode-v9"},
		{"unknown optional feature is fine", mutate(func(r *Recipe) { r.OptionalFeatures = []string{"shiny"} }), nil, ""},
		{"undeclared op", mutate(func(r *Recipe) { r.RequiredFeatures = []string{OpBlob, OpRef, OpPatch} }), ErrBadRecipe, "extract"},
		{"ref cycle", mutate(func(r *Recipe) { r.Artifacts[0].Steps = []Step{{Op: OpRef, Ref: r.Artifacts[1].ID}} }), ErrBadRecipe, "itself"},
		{"unknown blob", mutate(func(r *Recipe) { r.Artifacts[0].Steps[0].Blob = "sha256:" + strings.Repeat("0", 64) }), ErrBadRecipe, "not in the blob list"},
		{"path in name", mutate(func(r *Recipe) { r.Artifacts[0].Name = "../../etc/passwd" }), ErrBadRecipe, "bad id"},
		{"transform first", mutate(func(r *Recipe) { r.Artifacts[0].Steps = []Step{{Op: OpPatch, Blob: r.Blobs[0].Digest}} }), ErrBadRecipe, "cannot stand"},
		{"schema 0", []byte(`{"schemaVersion":0}`), ErrBadRecipe, "schemaVersion"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRecipe(c.data)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v, want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
}

func TestCorruptBlobLeavesNoFile(t *testing.T) {
	f := newFixture(t)
	bad := memBlobs{}
	for k, v := range f.blobs {
		bad[k] = bytes.Clone(v)
	}
	bad[digestOf(f.base)][42] ^= 1
	dir := t.TempDir()
	eng := NewEngine(f.recipe, bad, t.TempDir())
	defer eng.Close()
	arts, err := f.recipe.Select(Selection{Disks: []string{"openstack"}})
	if err != nil {
		t.Fatal(err)
	}
	err = eng.WriteDir(context.Background(), dir, arts, nil)
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("got %v, want a checksum error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("output directory holds %v after a failed rehydration", ents)
	}
}

func TestTruncatedDeltaFails(t *testing.T) {
	f := newFixture(t)
	for d, b := range f.blobs {
		if d != digestOf(f.base) {
			f.blobs[d] = b[:len(b)-3]
		}
	}
	eng := NewEngine(f.recipe, f.blobs, t.TempDir())
	defer eng.Close()
	var out bytes.Buffer
	err := eng.Rehydrate(context.Background(), "x86_64/openstack/qcow2.xz/disk", &out, nil)
	if err == nil {
		t.Fatal("truncated delta rehydrated without error")
	}
	if out.Len() >= len(f.target) {
		t.Fatalf("wrote %d bytes of a %d-byte artifact despite the error", out.Len(), len(f.target))
	}
}

func TestWriteStreamTar(t *testing.T) {
	f := newFixture(t)
	eng := NewEngine(f.recipe, f.blobs, t.TempDir())
	defer eng.Close()
	arts, err := f.recipe.Select(Selection{Disks: []string{"qemu", "openstack"}, PXE: true})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := eng.WriteStream(context.Background(), &out, arts, nil); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		a, _ := f.recipe.Artifact(findID(f.recipe, h.Name))
		if hexOf(b) != a.SHA256 {
			t.Fatalf("%s: wrong content in tar", h.Name)
		}
		names = append(names, h.Name)
	}
	if strings.Join(names, ",") != "kernel,qemu.qcow2,openstack.qcow2" {
		t.Fatalf("tar members %v", names)
	}
}

func findID(r *Recipe, name string) string {
	for _, a := range r.Artifacts {
		if a.Name == name {
			return a.ID
		}
	}
	return ""
}

func TestWriteDirAndSelect(t *testing.T) {
	f := newFixture(t)
	eng := NewEngine(f.recipe, f.blobs, t.TempDir())
	defer eng.Close()
	arts, err := f.recipe.Select(Selection{All: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := eng.WriteDir(context.Background(), dir, arts, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "openstack.qcow2"))
	if err != nil || !bytes.Equal(got, f.target) {
		t.Fatalf("openstack.qcow2 wrong (%v)", err)
	}
	for _, c := range []struct {
		sel  Selection
		want string
	}{
		{Selection{}, "nothing selected"},
		{Selection{Disks: []string{"vmware"}}, `no disk "vmware" for x86_64`},
		{Selection{ISO: true}, "no live ISO"},
		{Selection{Arch: "s390x", All: true}, "no artifacts for architecture s390x"},
	} {
		if _, err := f.recipe.Select(c.sel); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Select(%+v) = %v, want %q", c.sel, err, c.want)
		}
	}
}

func FuzzParseRecipe(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":1,"requiredFeatures":["blob"],"blobs":[],"artifacts":[]}`))
	f.Add([]byte(`{"schemaVersion":1,"requiredFeatures":["blob","ref"],"blobs":[{"digest":"sha256:` + strings.Repeat("a", 64) + `","size":1}],` +
		`"artifacts":[{"id":"a","name":"a","sha256":"` + strings.Repeat("b", 64) + `","steps":[{"op":"ref","ref":"a"}]}]}`))
	f.Add([]byte(`{"schemaVersion":2,"requiredFeatures":["future"]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecipe(data)
		if err != nil {
			return
		}
		// Whatever parses must validate again after a round trip, and selecting must not panic.
		out, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseRecipe(out); err != nil {
			t.Fatalf("re-parse of a valid recipe failed: %v", err)
		}
		r.Select(Selection{All: true})
		r.BlobsFor(r.Arches()...)
	})
}

// Pieces of one derived artifact rehydrated at the same time from one engine (as build's
// self-check does with the PXE files of the live ISO) share a single spooled rebuild of it.
func TestConcurrentExtractsShareOneSpool(t *testing.T) {
	f := newFixture(t)
	var pieces []Artifact
	for i := range 6 {
		off, n := int64(i)*400_000, int64(300_000)
		pieces = append(pieces, Artifact{ID: fmt.Sprintf("x86_64/metal/pxe/piece%d", i), Arch: "x86_64", Platform: "metal", Format: "pxe",
			Kind: fmt.Sprintf("piece%d", i), Name: fmt.Sprintf("piece%d", i), Size: n, SHA256: hexOf(f.target[off : off+n]),
			Steps: []Step{{Op: OpRef, Ref: "x86_64/openstack/qcow2.xz/disk"}, {Op: OpExtract, Offset: off, Length: n}}})
	}
	f.recipe.Artifacts = append(f.recipe.Artifacts[:2], pieces...)
	if err := f.recipe.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	eng := NewEngine(f.recipe, f.blobs, dir)
	var wg sync.WaitGroup
	errs := make(chan error, len(pieces))
	for _, a := range pieces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- eng.Rehydrate(context.Background(), a.ID, io.Discard, nil)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if files, _ := os.ReadDir(dir); len(files) != 1 {
		t.Fatalf("%d spool files, want 1 shared by every piece", len(files))
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	if files, _ := os.ReadDir(dir); len(files) != 0 {
		t.Fatalf("Close left %d spool files", len(files))
	}
}

package ociimage

import (
	"context"
	"encoding/json"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/rehydrator/rehydrator/internal/testregistry"
)

func TestBuildIsDeterministic(t *testing.T) {
	f := getFixture(t)
	a := build(t, f.spec())
	b := build(t, f.spec())
	if da, db := digestOf(t, a), digestOf(t, b); da != db {
		t.Fatalf("two builds of the same inputs: %s and %s", da, db)
	}
	// The same bytes whatever the number of cores (the zstd encoder's concurrency).
	prev := runtime.GOMAXPROCS(1)
	one := build(t, f.spec())
	runtime.GOMAXPROCS(prev)
	if digestOf(t, one) != digestOf(t, a) {
		t.Fatalf("GOMAXPROCS=1 and %d give different images", prev)
	}

	spec := f.spec()
	spec.Created = time.Unix(1700000000, 0)
	if digestOf(t, build(t, spec)) == digestOf(t, a) {
		t.Fatal("Created did not change the digest")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if digestOf(t, build(t, f.spec())) != digestOf(t, build(t, spec)) {
		t.Fatal("SOURCE_DATE_EPOCH and Created of the same time give different images")
	}
}

func TestBuildLayout(t *testing.T) {
	f := getFixture(t)
	img := build(t, f.spec())
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest %s config %s: want OCI types", m.MediaType, m.Config.MediaType)
	}
	if n := len(m.Layers); n != 1+len(f.blobs)+1 {
		t.Fatalf("%d layers, want tool + %d blobs + metadata", n, len(f.blobs))
	}
	checkMediaTypes(t, img)
	kinds := []string{"tool", "blob", "blob", "blob", "metadata"}
	for i, l := range m.Layers {
		if l.MediaType != types.OCILayerZStd {
			t.Errorf("layer %d: media type %s", i, l.MediaType)
		}
		if l.Annotations[LayerKindAnnotation] != kinds[i] {
			t.Errorf("layer %d: kind %q, want %q", i, l.Annotations[LayerKindAnnotation], kinds[i])
		}
	}
	if got := m.Layers[1].Annotations[annotationTitle]; got != "/usr/share/rehydrator/blobs/sha256/"+strings.TrimPrefix(f.digests[0], "sha256:") {
		t.Errorf("blob layer title %q", got)
	}
	if got := m.Layers[1].Annotations[BlobAnnotation]; got != f.digests[0] {
		t.Errorf("blob layer annotation %q", got)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/usr/bin/rehydrator" || strings.Join(cfg.Config.Cmd, " ") != "--help" {
		t.Errorf("entrypoint %q cmd %q", cfg.Config.Entrypoint, cfg.Config.Cmd)
	}
	if cfg.OS != "linux" || cfg.Architecture != "amd64" || !cfg.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("config %s/%s created %s", cfg.OS, cfg.Architecture, cfg.Created)
	}
	if cfg.Config.Labels[MetadataLabel] != cfg.RootFS.DiffIDs[4].String() {
		t.Errorf("label %s=%q, metadata diffID %s", MetadataLabel, cfg.Config.Labels[MetadataLabel], cfg.RootFS.DiffIDs[4])
	}

	// The flattened filesystem, as a container sees it.
	files := extractImage(t, img)
	want := map[string]string{
		"usr/bin/rehydrator":                   "-rwxr-xr-x",
		"usr/share/rehydrator/rehydrator.json": "-rw-r--r--",
		"usr/share/rehydrator/stream.json":     "-rw-r--r--",
		"usr/share/rehydrator/layers.json":     "-rw-r--r--",
		"usr/share/rehydrator/blobs/sha256/" + strings.TrimPrefix(f.digests[2], "sha256:"): "-rw-r--r--",
	}
	for name, mode := range want {
		fi, ok := files[name]
		if !ok {
			t.Errorf("no %s in the image", name)
			continue
		}
		if fi.mode != mode || fi.uid != 0 || fi.gid != 0 || !fi.mtime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: %s %d:%d %s", name, fi.mode, fi.uid, fi.gid, fi.mtime)
		}
	}
	var layers map[string]string
	if err := json.Unmarshal(files["usr/share/rehydrator/layers.json"].data, &layers); err != nil {
		t.Fatal(err)
	}
	for i, d := range f.digests {
		if layers[d] != cfg.RootFS.DiffIDs[1+i].String() {
			t.Errorf("layers.json[%s] = %s, want %s", d, layers[d], cfg.RootFS.DiffIDs[1+i])
		}
	}
}

func TestBuildPlatformAndDuplicates(t *testing.T) {
	f := getFixture(t)
	spec := f.spec()
	spec.Platform = "linux/arm64"
	spec.Blobs = append(spec.Blobs, f.blobs[0]) // same content twice: one layer
	img := build(t, spec)
	cfg, _ := img.ConfigFile()
	if cfg.Architecture != "arm64" || len(cfg.RootFS.DiffIDs) != 5 {
		t.Fatalf("arch %s, %d layers", cfg.Architecture, len(cfg.RootFS.DiffIDs))
	}
}

func TestOCILayout(t *testing.T) {
	f := getFixture(t)
	img := build(t, f.spec())
	dir := filepath.Join(t.TempDir(), "layout")
	d := write(t, "oci:"+dir+":stable", img)
	if d != digestOf(t, img) {
		t.Fatalf("Write returned %s, image digest %s", d, digestOf(t, img))
	}
	// Layer files are linked from the work directory, not copied.
	m, _ := img.Manifest()
	if n := linkCount(t, filepath.Join(dir, "blobs", "sha256", m.Layers[1].Digest.Hex)); n != 2 {
		t.Errorf("layer blob has %d links, want 2 (linked from the build's work directory)", n)
	}
	// Writing the same tag again replaces it; the only image can be opened without a tag.
	write(t, "oci:"+dir+":stable", img)
	checkSource(t, f, open(t, "oci:"+dir+":stable"), d)
	checkSource(t, f, open(t, "oci:"+dir), d)

	spec := f.spec()
	spec.Created = time.Unix(1, 0)
	write(t, "oci:"+dir+":next", build(t, spec))
	expectOpenError(t, "oci:"+dir, "holds 2 images: add :TAG (tags: next, stable)")
	expectOpenError(t, "oci:"+dir+":nope", `no image tagged "nope"`)
}

func TestDockerArchive(t *testing.T) {
	f := getFixture(t)
	img := build(t, f.spec())
	p := filepath.Join(t.TempDir(), "image.tar")
	write(t, "docker-archive:"+p+":example.com/rehydrator:v1", img)
	checkSource(t, f, open(t, "docker-archive:"+p), "")
	checkSource(t, f, open(t, "docker-archive:"+p+":example.com/rehydrator:v1"), "")
	checkSource(t, f, open(t, "docker-archive:"+p+":@0"), "")
	expectOpenError(t, "docker-archive:"+p+":example.com/other:v1", "no image tagged")

	// Without a name.
	p2 := filepath.Join(t.TempDir(), "noname.tar")
	write(t, "docker-archive:"+p2, img)
	checkSource(t, f, open(t, "docker-archive:"+p2), "")
}

func TestRegistry(t *testing.T) {
	f := getFixture(t)
	reg := testregistry.Start(t)
	img := build(t, f.spec())
	ref := "docker://" + reg.Host() + "/fcos/rehydrator:stable"
	d := write(t, ref, img)
	checkSource(t, f, open(t, ref), d)
	checkSource(t, f, open(t, "docker://"+reg.Host()+"/fcos/rehydrator@"+d), d)
	expectOpenError(t, "docker://"+reg.Host()+"/fcos/rehydrator:nope", "check the tag")
	expectOpenError(t, "docker://"+reg.Host()+"/fcos/nothing:stable", "")

	// Only the layer that holds the blob is fetched: stop the registry after Open and check
	// that the error names the registry.
	src := open(t, ref)
	reg.Stop()
	if _, err := src.OpenBlob(context.Background(), f.digests[0]); err == nil || !strings.Contains(err.Error(), "cannot reach registry "+reg.Host()) {
		t.Fatalf("OpenBlob with the registry stopped: %v", err)
	}
}

func TestGzip(t *testing.T) {
	f := getFixture(t)
	spec := f.spec()
	spec.Compression = Compression{Algo: "gzip", Level: 6}
	img := build(t, spec)
	m, _ := img.Manifest()
	for _, l := range m.Layers {
		if l.MediaType != types.OCILayer {
			t.Fatalf("media type %s, want %s", l.MediaType, types.OCILayer)
		}
	}
	if digestOf(t, img) != digestOf(t, build(t, spec)) {
		t.Fatal("gzip builds differ")
	}
	dir := filepath.Join(t.TempDir(), "layout")
	d := write(t, "oci:"+dir+":gz", img)
	checkSource(t, f, open(t, "oci:"+dir+":gz"), d)
}

func TestCompressionCommand(t *testing.T) {
	needTool(t, "zstd", "Debian: apt-get install zstd")
	f := getFixture(t)
	spec := f.spec()
	spec.Compression = Compression{Command: []string{"zstd", "-10", "--long=27", "-T0", "-c", "-q"}}
	img := build(t, spec)
	if digestOf(t, img) != digestOf(t, build(t, spec)) {
		t.Fatal("zstd command builds differ")
	}
	if digestOf(t, img) == digestOf(t, build(t, f.spec())) {
		t.Fatal("zstd -10 gave the same layers as the Go encoder")
	}
	dir := filepath.Join(t.TempDir(), "layout")
	d := write(t, "oci:"+dir+":z19", img)
	checkSource(t, f, open(t, "oci:"+dir+":z19"), d)

	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"cat"}, "output is not compressed, want zstd"},
		{[]string{"gzip", "-c", "-n"}, "output is gzip, want zstd"},
		{[]string{"zstd", "--no-such-flag"}, "exit status"},
		{[]string{"no-such-compressor"}, "executable file not found"},
	} {
		spec.Compression = Compression{Command: tc.cmd}
		_, err := Build(context.Background(), spec, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Command %q: got %v, want an error with %q", tc.cmd, err, tc.want)
		}
	}
}

func TestDirSource(t *testing.T) {
	f := getFixture(t)
	img := build(t, f.spec())
	root := t.TempDir()
	unpack(t, img, root)
	src := open(t, "dir:"+filepath.Join(root, DataDir))
	checkSource(t, f, src, "")
	p, ok := src.(LocalFiler).BlobPath(f.digests[1])
	if !ok || p != filepath.Join(root, DataDir, "blobs/sha256", strings.TrimPrefix(f.digests[1], "sha256:")) {
		t.Fatalf("BlobPath: %q %v", p, ok)
	}
	if _, ok := src.(LocalFiler).BlobPath("sha256:" + strings.Repeat("0", 64)); ok {
		t.Fatal("BlobPath of a missing blob")
	}
	expectOpenError(t, "dir:"+root, "not a rehydrator data directory")
}

func TestBase(t *testing.T) {
	f := getFixture(t)
	base := build(t, f.spec())
	_, host := startCountingRegistry(t)
	tmp := t.TempDir()
	bases := []string{
		"oci:" + filepath.Join(tmp, "layout") + ":base",
		"docker-archive:" + filepath.Join(tmp, "base.tar") + ":example.com/base:v1",
		"docker://" + host + "/base:v1",
	}
	for _, ref := range bases {
		write(t, ref, base)
		spec := f.spec()
		spec.Binary = ""
		spec.Base = ref
		spec.Recipe = []byte(`{"version":2}`)
		spec.Blobs = spec.Blobs[:1]
		img := build(t, spec)
		m, _ := img.Manifest()
		if len(m.Layers) != 5+2 {
			t.Fatalf("base %s: %d layers, want the base's 5 + blob + metadata", ref, len(m.Layers))
		}
		checkMediaTypes(t, img)
		if ref != bases[1] && m.Annotations[annotationBaseDgst] != digestOf(t, base) {
			t.Errorf("base %s: base digest annotation %q", ref, m.Annotations[annotationBaseDgst])
		}
		cfg, _ := img.ConfigFile()
		if strings.Join(cfg.Config.Entrypoint, " ") != BinaryPath {
			t.Errorf("base %s: entrypoint %q", ref, cfg.Config.Entrypoint)
		}
		out := "oci:" + filepath.Join(t.TempDir(), "derived") + ":derived"
		d := write(t, out, img)
		src := open(t, out)
		recipe, _, _ := src.Metadata(context.Background())
		if string(recipe) != `{"version":2}` {
			t.Fatalf("base %s: recipe %q: the top metadata layer must win", ref, recipe)
		}
		if src.(Digester).Digest() != d {
			t.Fatalf("base %s: digest", ref)
		}
		rc, err := src.OpenBlob(context.Background(), f.digests[0])
		if err != nil {
			t.Fatalf("base %s: %v", ref, err)
		}
		if b, err := readAll(rc); err != nil || string(b) != string(f.content[f.digests[0]]) {
			t.Fatalf("base %s: blob: %v", ref, err)
		}
		rc.Close()
	}
}

func TestErrors(t *testing.T) {
	f := getFixture(t)
	dir := filepath.Join(t.TempDir(), "layout")
	img := build(t, f.spec())
	write(t, "oci:"+dir+":stable", img)
	for _, tc := range []struct{ ref, want string }{
		{"quay.io/fcos/rehydrator:stable", "did you mean docker://quay.io/fcos/rehydrator:stable"},
		{"ftp:foo", `unknown transport "ftp"`},
		{"docker:quay.io/x", "write docker://quay.io/x"},
		{"oci:", "needs a path"},
		{"oci:" + filepath.Join(dir, "missing"), "not an OCI layout"},
		{"docker-archive:" + filepath.Join(dir, "missing.tar"), "no such file"},
		{"docker-archive:" + filepath.Join(dir, "index.json"), "not a docker-archive"},
		{"dir:" + dir, "not a rehydrator data directory"},
	} {
		expectOpenError(t, tc.ref, tc.want)
	}

	src := open(t, "oci:"+dir+":stable")
	ctx := context.Background()
	if _, err := src.OpenBlob(ctx, "sha256:"+strings.Repeat("ab", 32)); err == nil || !strings.Contains(err.Error(), "not in oci:"+dir+":stable's layers.json") {
		t.Errorf("unknown blob: %v", err)
	}
	if _, err := src.OpenBlob(ctx, "md5:1234"); err == nil || !strings.Contains(err.Error(), "not a digest") {
		t.Errorf("bad digest: %v", err)
	}
}

func TestNotARehydratorImage(t *testing.T) {
	f := getFixture(t)
	img := build(t, f.spec())
	cfg, _ := img.ConfigFile()
	cfg.Config.Labels = nil
	plain := withConfig(t, img, cfg)
	dir := filepath.Join(t.TempDir(), "layout")
	write(t, "oci:"+dir+":plain", plain)
	expectOpenError(t, "oci:"+dir+":plain", "is not a rehydrator image (its config has no dev.rehydrator.metadata label)")
}

func TestCorruptBlobIsDetected(t *testing.T) {
	f := getFixture(t)
	root := t.TempDir()
	unpack(t, build(t, f.spec()), root)
	p := filepath.Join(root, DataDir, "blobs/sha256", strings.TrimPrefix(f.digests[0], "sha256:"))
	corrupt(t, p)
	src := open(t, "dir:"+filepath.Join(root, DataDir))
	rc, err := src.OpenBlob(context.Background(), f.digests[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := readAll(rc); err == nil || !strings.Contains(err.Error(), "the image is corrupt") {
		t.Fatalf("reading a corrupt blob: %v", err)
	}
}

func TestParsePlatform(t *testing.T) {
	for in, want := range map[string]string{"": "linux/amd64", "linux/arm64": "linux/arm64", "linux/arm/v7": "linux/arm/v7"} {
		p, err := parsePlatform(in)
		if err != nil || p.String() != want {
			t.Errorf("parsePlatform(%q) = %v, %v", in, p, err)
		}
	}
	if _, err := parsePlatform("amd64"); err == nil {
		t.Error("parsePlatform(amd64): no error")
	}
}

var _ v1.Layer = (*fileLayer)(nil)

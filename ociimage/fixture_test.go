package ociimage

import (
	"archive/tar"

	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fixture is a small release: three generated blobs of a few MiB, a dummy tool binary, a
// recipe and stream metadata. Blobs mix random and repeated data so that compression matters.
type fixture struct {
	dir        string
	binary     string
	blobs      []string
	digests    []string
	content    map[string][]byte // digest -> bytes
	recipe     []byte
	streamJSON []byte
}

var (
	fixtureOnce sync.Once
	sharedFix   *fixture
	fixtureDir  string
)

func TestMain(m *testing.M) {
	var err error
	fixtureDir, err = os.MkdirTemp("", "ociimage-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(fixtureDir)
	os.Exit(code)
}

func getFixture(t *testing.T) *fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		f, err := makeFixture(filepath.Join(fixtureDir, "fixture"))
		if err != nil {
			panic(err)
		}
		sharedFix = f
	})
	return sharedFix
}

func makeFixture(dir string) (*fixture, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f := &fixture{dir: dir, content: map[string][]byte{}}
	rng := rand.New(rand.NewSource(42))
	sizes := []int{3<<20 + 123, 2 << 20, 1<<20 + 4097}
	for i, size := range sizes {
		data := make([]byte, size)
		for off := 0; off < size; off += 4096 {
			end := min(off+4096, size)
			if rng.Intn(3) == 0 {
				rng.Read(data[off:end])
			} else {
				copy(data[off:end], bytes.Repeat([]byte{byte(i), byte(off >> 12)}, 2048))
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("blob%d", i))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		d := "sha256:" + hex.EncodeToString(sum[:])
		f.blobs = append(f.blobs, p)
		f.digests = append(f.digests, d)
		f.content[d] = data
	}
	bin := make([]byte, 200<<10)
	rng.Read(bin)
	f.binary = filepath.Join(dir, "rehydrator")
	if err := os.WriteFile(f.binary, append([]byte("\x7fELF dummy"), bin...), 0o755); err != nil {
		return nil, err
	}
	f.recipe = []byte(`{"version":1,"artifacts":["qemu","openstack"],"blobs":["` + strings.Join(f.digests, `","`) + `"]}`)
	f.streamJSON = []byte(`{"stream":"stable","architectures":{}}`)
	return f, nil
}

func (f *fixture) spec() BuildSpec {
	return BuildSpec{Binary: f.binary, Blobs: f.blobs, Recipe: f.recipe, StreamJSON: f.streamJSON}
}

func build(t *testing.T, spec BuildSpec) v1.Image {
	t.Helper()
	img, err := Build(context.Background(), spec, t.TempDir())
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return img
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func write(t *testing.T, ref string, img v1.Image) string {
	t.Helper()
	d, err := Write(context.Background(), ref, img)
	if err != nil {
		t.Fatalf("Write %s: %v", ref, err)
	}
	return d
}

func open(t *testing.T, ref string) Source {
	t.Helper()
	src, err := Open(context.Background(), ref)
	if err != nil {
		t.Fatalf("Open %s: %v", ref, err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// checkSource reads the metadata and every blob, byte for byte. wantDigest "" skips the
// digest check (transports that keep no manifest, or copies that changed it).
func checkSource(t *testing.T, f *fixture, src Source, wantDigest string) {
	t.Helper()
	ctx := context.Background()
	recipe, stream, err := src.Metadata(ctx)
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	if !bytes.Equal(recipe, f.recipe) || !bytes.Equal(stream, f.streamJSON) {
		t.Fatalf("Metadata: got recipe %q stream %q", recipe, stream)
	}
	for _, d := range f.digests {
		rc, err := src.OpenBlob(ctx, d)
		if err != nil {
			t.Fatalf("OpenBlob %s: %v", d, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read blob %s: %v", d, err)
		}
		if !bytes.Equal(got, f.content[d]) {
			t.Fatalf("blob %s: got %d bytes that differ from the %d written", d, len(got), len(f.content[d]))
		}
	}
	if wantDigest != "" {
		if got := src.(Digester).Digest(); got != wantDigest {
			t.Fatalf("Digest: got %s, want %s", got, wantDigest)
		}
	}
}

// needTool fails (never skips) when a tool the tests must use for real is missing.
func needTool(t *testing.T, name, install string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s not found in PATH: install it (%s)", name, install)
	}
}

// skopeo runs skopeo with a permissive policy of its own (the machine's may be strict or absent)
// and returns stdout.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	needTool(t, "skopeo", "Debian: apt-get install skopeo")
	policy := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "skopeo", append([]string{"--policy", policy}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

type extracted struct {
	mode     string
	uid, gid int
	mtime    time.Time
	data     []byte
}

// extractImage flattens the image as a container engine would and returns its files.
func extractImage(t *testing.T, img v1.Image) map[string]extracted {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]extracted{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		e := extracted{mode: hdr.FileInfo().Mode().String(), uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime}
		if hdr.Typeflag == tar.TypeReg {
			if e.data, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
		out[cleanTarName(hdr.Name)] = e
	}
}

// unpack writes the image's flattened filesystem under root, as /usr/share/rehydrator is
// inside a running container.
func unpack(t *testing.T, img v1.Image, root string) {
	t.Helper()
	for name, e := range extractImage(t, img) {
		p := filepath.Join(root, name)
		if e.data == nil && strings.HasPrefix(e.mode, "d") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, e.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func expectOpenError(t *testing.T, ref, want string) {
	t.Helper()
	src, err := Open(context.Background(), ref)
	if err == nil {
		src.Close()
		t.Errorf("Open %s: no error, want one with %q", ref, want)
		return
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Open %s: %v\nwant an error with %q", ref, err, want)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("Open %s: error has several lines: %q", ref, err)
	}
}

func withConfig(t *testing.T, img v1.Image, cfg *v1.ConfigFile) v1.Image {
	t.Helper()
	out, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func corrupt(t *testing.T, p string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }

// checkMediaTypes checks that every layer's bytes are compressed as its media type says.
func checkMediaTypes(t *testing.T, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[types.MediaType]string{types.OCILayerZStd: "zstd", types.OCILayer: "gzip", types.OCIUncompressedLayer: ""}
	for i, d := range m.Layers {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		magic := make([]byte, 4)
		_, err = io.ReadFull(rc, magic)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		algo, ok := want[d.MediaType]
		if !ok || sniff(magic) != algo {
			t.Errorf("layer %d: media type %s but content compressed as %q", i, d.MediaType, sniff(magic))
		}
	}
}

package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rehydrator/rehydrator/streammeta"
	"github.com/rehydrator/rehydrator/tests/fixtures"
)

// sharedImage is the small release built once per test binary into an OCI layout, for the
// tests that are about moving and reading an image rather than building it.
var sharedImage struct {
	once sync.Once
	ref  string
	err  string
}

// sharedLayout returns "oci:DIR:stable", the small release built with gzip layers (quick to
// build, readable by every client), and the release's stream metadata. The layout lives beside
// the binary under test and goes away with it; callers must not modify it.
func sharedLayout(t *testing.T) (string, *streammeta.Release) {
	t.Helper()
	rel, sm := smallRelease(t)
	sharedImage.once.Do(func() {
		dir := filepath.Join(filepath.Dir(bin), "shared-layout")
		ref := "oci:" + dir + ":stable"
		r := run(t, nil, "build", rel.Dir, "--output", ref, "--compression", "gzip", "--level", "1", "-q")
		if r.err != nil {
			os.RemoveAll(dir)
			sharedImage.err = "build " + ref + ": " + r.err.Error() + ": " + string(r.stderr)
			return
		}
		sharedImage.ref = ref
	})
	if sharedImage.err != "" {
		t.Fatal(sharedImage.err)
	}
	return sharedImage.ref, sm
}

// skopeo runs the real skopeo with plain-http registries on loopback.
func skopeo(t *testing.T, args ...string) string {
	t.Helper()
	return tool(t, "skopeo", args...)
}

// pushShared copies the shared image into a registry with skopeo and returns its docker:// ref.
func pushShared(t *testing.T, host, repo string) string {
	t.Helper()
	src, _ := sharedLayout(t)
	dst := "docker://" + host + "/" + repo
	skopeo(t, "copy", "--quiet", "--dest-tls-verify=false", src, dst)
	return dst
}

// checkOne rehydrates one disk into a new directory and checks it against the stream metadata.
func checkOne(t *testing.T, ref string, sm *streammeta.Release, disk string, extra ...string) {
	t.Helper()
	out := t.TempDir()
	args := append([]string{"rehydrate", out, "--disk", disk, "--image", ref}, extra...)
	mustRun(t, args...)
	a := find(t, sm, disk)
	if got := fileSHA(t, filepath.Join(out, a.Name)); got != a.UncompressedSHA256 {
		t.Fatalf("%s from %s: sha256 %s, stream metadata says %s", a.Name, ref, got, a.UncompressedSHA256)
	}
	assertOnly(t, out, a.Name)
}

// assertOnly fails unless dir holds exactly the named files (none for a failed run).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// original returns the shipped file of a as rehydrate must write it: the file in the release
// when it ships uncompressed, else decompressed into dir (checked against the stream metadata).
func original(t *testing.T, rel *fixtures.Release, a streammeta.Artifact, dir string) string {
	t.Helper()
	shipped := filepath.Join(rel.Dir, a.ShippedName)
	if a.Compression == "" {
		return shipped
	}
	p := filepath.Join(dir, a.Name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := streammeta.Decompress(t.Context(), a, shipped, f); err != nil {
		t.Fatal(err)
	}
	return p
}

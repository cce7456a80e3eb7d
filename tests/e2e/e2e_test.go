// Package e2e drives the real rehydrator binary against a generated release, real registries
// and the real qemu-img, as a user would.
package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/rehydrator/rehydrator/internal/testregistry"
	"github.com/rehydrator/rehydrator/streammeta"
	"github.com/rehydrator/rehydrator/tests/fixtures"
)

var bin string // the rehydrator binary under test

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rehydrator-e2e-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "rehydrator")
	// The release build: static, with cgo for the C zlib and libzstd that reproduce VMDK grains
	// and squashfs blocks bit for bit (scripts/demo.sh and the Containerfile build it the same
	// way); -trimpath, as the Containerfile builds: the container test then reuses the compiled
	// packages.
	cmd := exec.Command("go", "build", "-trimpath", "-tags", "netgo,osusergo", "-ldflags", "-linkmode external -extldflags -static",
		"-o", bin, "github.com/rehydrator/rehydrator/cmd/rehydrator")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building rehydrator: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr []byte
	err            error
}

func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return result{out.Bytes(), errb.Bytes(), err}
}

func mustRun(t *testing.T, args ...string) []byte {
	t.Helper()
	r := run(t, nil, args...)
	if r.err != nil {
		t.Fatalf("rehydrator %s: %v\n%s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r.stdout
}

// mustFail runs a command that must fail with a one-line error containing want.
func mustFail(t *testing.T, env []string, want string, args ...string) {
	t.Helper()
	r := run(t, env, args...)
	if r.err == nil {
		t.Fatalf("rehydrator %s succeeded, want an error about %q", strings.Join(args, " "), want)
	}
	msg := strings.TrimSpace(string(r.stderr))
	if strings.Count(msg, "\n") > 0 && !strings.Contains(msg, "\r") {
		lines := strings.Split(msg, "\n")
		msg = lines[len(lines)-1]
	}
	if !strings.Contains(msg, want) {
		t.Fatalf("rehydrator %s: error %q does not mention %q", strings.Join(args, " "), msg, want)
	}
}

// rehydrateTar runs `rehydrate - ARGS...` (several artifacts: a tar stream on standard output),
// unpacks the stream with the real tar, and returns the directory it unpacked into.
func rehydrateTar(t *testing.T, args ...string) string {
	t.Helper()
	r := run(t, nil, append([]string{"rehydrate", "-"}, args...)...)
	if r.err != nil {
		t.Fatalf("rehydrate - %s: %v: %s", strings.Join(args, " "), r.err, r.stderr)
	}
	dir := t.TempDir()
	cmd := exec.Command("tar", "xf", "-", "-C", dir)
	cmd.Stdin = bytes.NewReader(r.stdout)
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar xf: %v %s", err, o)
	}
	return dir
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func smallRelease(t *testing.T) (*fixtures.Release, *streammeta.Release) {
	t.Helper()
	return release(t, fixtures.TestOptions())
}

// release returns the cached fixture release made with opt, and its stream metadata.
func release(t *testing.T, opt fixtures.Options) (*fixtures.Release, *streammeta.Release) {
	t.Helper()
	rel := fixtures.Cached(t, opt)
	raw, err := os.ReadFile(rel.StreamPath)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := streammeta.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return rel, sm
}

// originals decompresses the shipped files once, for qemu-img compare.
func originals(t *testing.T, rel *fixtures.Release, sm *streammeta.Release) map[string]string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	for _, a := range sm.Artifacts {
		out[a.Name] = original(t, rel, a, dir)
	}
	return out
}

// checkRehydrated verifies every artifact in dir: SHA-256 against stream.json, and qemu-img
// compare / check against the original for disk images.
func checkRehydrated(t *testing.T, dir string, sm *streammeta.Release, orig map[string]string) {
	t.Helper()
	for _, a := range sm.Artifacts {
		p := filepath.Join(dir, a.Name)
		if got := fileSHA(t, p); got != a.UncompressedSHA256 {
			t.Fatalf("%s: sha256 %s, stream metadata says %s", a.Name, got, a.UncompressedSHA256)
		}
		if strings.HasSuffix(a.Name, ".qcow2") || strings.HasSuffix(a.Name, ".raw") {
			format := "raw"
			if strings.HasSuffix(a.Name, ".qcow2") {
				format = "qcow2"
				tool(t, "qemu-img", "check", p)
			}
			tool(t, "qemu-img", "compare", "-f", format, "-F", format, p, orig[a.Name])
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Fatalf("left a temporary file behind: %s", e.Name())
		}
	}
}

func TestBuildAndRehydrateEverywhere(t *testing.T) {
	rel, sm := smallRelease(t)
	orig := originals(t, rel, sm)
	work := t.TempDir()
	reg := testregistry.Start(t)

	layoutRef := "oci:" + filepath.Join(work, "layout") + ":stable"
	archiveRef := "docker-archive:" + filepath.Join(work, "image.tar")
	registryRef := "docker://" + reg.Host() + "/fcos-images:stable"

	digest := strings.TrimSpace(string(mustRun(t, "build", rel.Dir, "--output", layoutRef, "--level", "3")))
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("build printed %q, want a digest", digest)
	}
	// Same inputs, same image: a second build gives the same digest.
	again := strings.TrimSpace(string(mustRun(t, "build", rel.Dir, "--output", "oci:"+filepath.Join(work, "layout2")+":stable", "--level", "3", "-q")))
	if again != digest {
		t.Fatalf("rebuild gave %s, first build %s: builds are not deterministic", again, digest)
	}
	mustRun(t, "build", rel.Dir, "--output", archiveRef, "--level", "3", "-q")
	mustRun(t, "build", rel.Dir, "--output", registryRef, "--compression", "gzip", "-q")

	for _, ref := range []string{layoutRef, archiveRef, registryRef} {
		t.Run(strings.SplitN(ref, ":", 2)[0], func(t *testing.T) {
			if got := mustRun(t, "print-stream-json", "--image", ref); !bytes.Equal(got, sm.Raw) {
				t.Fatal("print-stream-json differs from the release's stream.json")
			}
			list := string(mustRun(t, "list", "--image", ref))
			for _, a := range sm.Artifacts {
				if !strings.Contains(list, a.Name) || !strings.Contains(list, a.UncompressedSHA256) {
					t.Fatalf("list does not show %s with its sha256:\n%s", a.Name, list)
				}
			}
			out := t.TempDir()
			mustRun(t, "rehydrate", out, "--all", "--image", ref, "--tmpdir", t.TempDir())
			checkRehydrated(t, out, sm, orig)
		})
	}

	t.Run("stdout", func(t *testing.T) {
		a := find(t, sm, "openstack")
		r := run(t, nil, "rehydrate", "-", "--disk", "openstack", "--image", layoutRef)
		if r.err != nil {
			t.Fatalf("%v: %s", r.err, r.stderr)
		}
		sum := sha256.Sum256(r.stdout)
		if hex.EncodeToString(sum[:]) != a.UncompressedSHA256 {
			t.Fatal("rehydrate - --disk openstack: wrong bytes on stdout")
		}
	})

	t.Run("tar", func(t *testing.T) {
		out := rehydrateTar(t, "--disk", "qemu", "--disk", "metal4k", "--image", layoutRef)
		for _, d := range []string{"qemu", "metal4k"} {
			a := find(t, sm, d)
			if got := fileSHA(t, filepath.Join(out, a.Name)); got != a.UncompressedSHA256 {
				t.Fatalf("%s from tar: wrong sha256", a.Name)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		mustFail(t, nil, `no disk "nosuch"`, "rehydrate", t.TempDir(), "--disk", "nosuch", "--image", layoutRef)
		mustFail(t, nil, "nothing selected", "rehydrate", t.TempDir(), "--image", layoutRef)
		mustFail(t, nil, "exactly one DEST", "rehydrate", "--all", "--image", layoutRef)
		mustFail(t, nil, "not a directory", "rehydrate", filepath.Join(rel.Dir, "stream.json"), "--all", "--image", layoutRef)
		mustFail(t, nil, "transport", "list", "--image", "nosuchtransport:/x")
		mustFail(t, nil, "no such file", "list", "--image", "oci:"+filepath.Join(work, "missing"))
		mustFail(t, nil, "needs --output", "build", rel.Dir)
		mustFail(t, nil, "zstd levels", "build", rel.Dir, "--output", layoutRef, "--level", "99")
	})

	t.Run("in-container dir", func(t *testing.T) {
		root := unpack(t, filepath.Join(work, "layout"))
		data := filepath.Join(root, "usr/share/rehydrator")
		if _, err := os.Stat(filepath.Join(root, "usr/bin/rehydrator")); err != nil {
			t.Fatalf("the image has no /usr/bin/rehydrator: %v", err)
		}
		env := []string{"REHYDRATOR_IMAGE=dir:" + data}
		r := run(t, env, "rehydrate", "-", "--disk", "openstack")
		if sum := sha256.Sum256(r.stdout); r.err != nil || hex.EncodeToString(sum[:]) != find(t, sm, "openstack").UncompressedSHA256 {
			t.Fatalf("from the unpacked image: %v %s", r.err, r.stderr)
		}

		// A recipe that needs a feature this rehydrator does not know is refused.
		recipePath := filepath.Join(data, "rehydrator.json")
		good, _ := os.ReadFile(recipePath)
		var doc map[string]any
		json.Unmarshal(good, &doc)
		doc["requiredFeatures"] = append(doc["requiredFeatures"].([]any), "vmdk-encode-v99")
		bad, _ := json.Marshal(doc)
		os.WriteFile(recipePath, bad, 0o644)
		out := t.TempDir()
		mustFail(t, env, "vmdk-encode-v99", "rehydrate", out, "--disk", "openstack")
		os.WriteFile(recipePath, good, 0o644)

		// A truncated delta fails and leaves no file.
		var recipe struct {
			Blobs []struct{ Digest, Role string }
		}
		json.Unmarshal(good, &recipe)
		for _, b := range recipe.Blobs {
			if b.Role == "delta" {
				p := filepath.Join(data, "blobs/sha256", strings.TrimPrefix(b.Digest, "sha256:"))
				st, _ := os.Stat(p)
				os.Truncate(p, st.Size()/2)
			}
		}
		mustFail(t, env, "openstack", "rehydrate", out, "--disk", "openstack")
		if ents, _ := os.ReadDir(out); len(ents) != 0 {
			t.Fatalf("a failed rehydration left %v", ents)
		}
	})
}

func TestBuildRefusesCorruptRelease(t *testing.T) {
	rel, sm := smallRelease(t)
	dir := t.TempDir()
	for _, name := range append(rel.Files, "stream.json") {
		src := filepath.Join(rel.Dir, filepath.Base(name))
		if err := os.Link(src, filepath.Join(dir, filepath.Base(name))); err != nil {
			b, _ := os.ReadFile(src)
			os.WriteFile(filepath.Join(dir, filepath.Base(name)), b, 0o644)
		}
	}
	a := find(t, sm, "openstack")
	p := filepath.Join(dir, a.ShippedName)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0x40
	os.Remove(p) // break the hard link before writing
	os.WriteFile(p, b, 0o644)
	out := filepath.Join(t.TempDir(), "layout")
	mustFail(t, nil, a.ShippedName, "build", dir, "--output", "oci:"+out, "--level", "1")
	if _, err := os.Stat(out); err == nil {
		t.Fatal("a refused build left an image behind")
	}
	os.Remove(p)
	mustFail(t, nil, "missing", "build", dir, "--output", "oci:"+out, "--level", "1")
}

func find(t *testing.T, sm *streammeta.Release, disk string) streammeta.Artifact {
	t.Helper()
	for _, a := range sm.Artifacts {
		if a.DiskName() == disk {
			return a
		}
	}
	t.Fatalf("release has no %s disk", disk)
	return streammeta.Artifact{}
}

// unpack flattens the image in an OCI layout into a root filesystem, as a container engine would.
func unpack(t *testing.T, layoutDir string) string {
	t.Helper()
	p, err := layout.FromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(root, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			os.MkdirAll(filepath.Dir(target), 0o755)
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777|0o200)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
	}
	return root
}

// TestEveryPlatform builds a release with every platform the fixture builder knows (VMDK, OVA,
// VHD, GCP tar, gzipped qcow2, and the live ISO and PXE set when it makes them) and rehydrates
// all of it from the image: formats without a clever recipe yet are still rehydrated bit for bit.
func TestEveryPlatform(t *testing.T) {
	opt := fixtures.TestOptions()
	opt.Platforms = fixtures.AllPlatforms
	rel, sm := release(t, opt)
	orig := originals(t, rel, sm)
	ref := "oci:" + filepath.Join(t.TempDir(), "layout") + ":all"
	mustRun(t, "build", rel.Dir, "--output", ref, "--level", "3", "-q")
	out := t.TempDir()
	mustRun(t, "rehydrate", out, "--all", "--image", ref)
	checkRehydrated(t, out, sm, orig)
	checkFormats(t, ref, out, sm, orig) // formats_test.go
	for _, a := range sm.Artifacts {
		p := filepath.Join(out, a.Name)
		switch {
		case strings.HasSuffix(a.Name, ".vmdk"):
			tool(t, "qemu-img", "check", "-f", "vmdk", p)
		case strings.HasSuffix(a.Name, ".ova"), strings.HasSuffix(a.Name, ".tar"):
			if list := tool(t, "tar", "tvf", p); len(strings.TrimSpace(list)) == 0 {
				t.Fatalf("%s: tar lists nothing", a.Name)
			}
		case a.IsISO():
			tool(t, "xorriso", "-indev", p, "-find", "/images/pxeboot", "-type", "f")
		}
	}
	var hasISO, hasPXE bool
	for _, a := range sm.Artifacts {
		hasISO = hasISO || a.IsISO()
		hasPXE = hasPXE || a.IsPXE()
	}
	if hasISO && hasPXE {
		// The README's line: several artifacts to standard output are a tar stream.
		dir := rehydrateTar(t, "--iso", "--pxe", "--disk", "qemu", "--image", ref)
		n := 0
		for _, a := range sm.Artifacts {
			if a.IsISO() || a.IsPXE() || a.DiskName() == "qemu" {
				if got := fileSHA(t, filepath.Join(dir, a.Name)); got != a.UncompressedSHA256 {
					t.Fatalf("%s from the tar stream: wrong sha256", a.Name)
				}
				n++
			}
		}
		if n != 5 {
			t.Fatalf("tar stream held %d of the 5 files (ISO, 3 PXE, qemu)", n)
		}
		if !strings.Contains(string(mustRun(t, "list", "--image", ref)), "extract(") {
			t.Fatal("list shows no PXE file cut out of the ISO")
		}
	}
}

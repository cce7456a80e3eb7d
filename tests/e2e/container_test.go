package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rehydrator/rehydrator/streammeta"
	"github.com/rehydrator/rehydrator/tests/fixtures"
)

// podman runs the real podman on a storage of the test's own (vfs: no overlay mounts needed).
type podman struct {
	t    *testing.T
	args []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman not found: install it (scripts/setup-debian.sh, or apt-get install podman)")
	}
	dir := t.TempDir()
	return &podman{t: t, args: []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}}
}

func (p *podman) prefix() string { return "podman " + strings.Join(p.args, " ") }

func (p *podman) run(args ...string) string {
	p.t.Helper()
	return strings.TrimSpace(tool(p.t, "podman", append(append([]string(nil), p.args...), args...)...))
}

// TestContainer builds the tool image from the Containerfile with podman, builds a release
// image on it with build --from, exports the container's root filesystem as podman would
// mount it, and runs the image's entrypoint in it with chroot: the README's podman run lines,
// except that podman cannot start containers on these machines (it may not raise rlimits).
func TestContainer(t *testing.T) {
	root := moduleRoot(t)
	pm := newPodman(t)
	// podman names an image pulled from oci:PATH after PATH, and names must be lowercase.
	work, err := os.MkdirTemp("", "rehydrator-container-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })

	// Offline there is no golang image to pull: make the builder from this machine's Go, and
	// lend it the module cache and build cache (so it compiles what the test binary did).
	cmd := exec.Command(filepath.Join(root, "scripts", "go-builder-image.sh"), "localhost/rehydrator-go-builder:e2e")
	cmd.Env = append(os.Environ(), "PODMAN="+pm.prefix())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go-builder-image.sh: %v\n%s", err, out)
	}
	goenv := strings.Fields(tool(t, "go", "env", "GOCACHE", "GOMODCACHE"))
	pm.run("build", "--quiet", "--isolation", "chroot", "--layers=false",
		"-v", goenv[0]+":/root/.cache/go-build", "-v", goenv[1]+":/root/go/pkg/mod:ro",
		"--build-arg", "GO_IMAGE=localhost/rehydrator-go-builder:e2e", "--build-arg", "VERSION=e2e",
		"-t", "localhost/rehydrator:e2e", "-f", filepath.Join(root, "Containerfile"), root)
	toolDir := filepath.Join(work, "tool")
	pm.run("save", "--quiet", "--format", "oci-dir", "-o", toolDir, "localhost/rehydrator:e2e")

	// The release image: the live ISO and PXE set too, for the README's tar line.
	opt := fixtures.TestOptions()
	opt.Platforms = fixtures.AllPlatforms
	rel := fixtures.Cached(t, opt)
	var raw []byte
	raw, err = os.ReadFile(rel.StreamPath)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := streammeta.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	relRef := "oci:" + filepath.Join(work, "release") + ":stable"
	mustRun(t, "build", rel.Dir, "--from", "oci:"+toolDir, "--output", relRef, "--level", "1", "-q")

	// podman reads the image we wrote (zstd layers and all) and makes a container of it.
	id := pm.run("pull", "--quiet", relRef)
	var cfg struct {
		Entrypoint, Cmd, Env []string
		Labels               map[string]string
	}
	if err := json.Unmarshal([]byte(pm.run("image", "inspect", "--format", "{{json .Config}}", id)), &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Entrypoint, " ") != "/usr/bin/rehydrator" || cfg.Labels["org.opencontainers.image.version"] != "e2e" {
		t.Fatalf("release image config: entrypoint %v, labels %v: want the Containerfile's", cfg.Entrypoint, cfg.Labels)
	}
	pm.run("create", "--name", "rehydrator-e2e", id)
	rootfs := filepath.Join(work, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	export := filepath.Join(work, "rootfs.tar")
	pm.run("export", "-o", export, "rehydrator-e2e")
	tool(t, "tar", "-C", rootfs, "-xf", export)
	os.Remove(export)

	// podman run --rm -i IMAGE ARGS: the entrypoint with ARGS (else CMD) in the image's root.
	inContainer := func(args ...string) result {
		t.Helper()
		if len(args) == 0 {
			args = cfg.Cmd
		}
		c := exec.Command(cfg.Entrypoint[0], append(cfg.Entrypoint[1:], args...)...)
		c.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs}
		c.Dir = "/"
		c.Env = cfg.Env
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		if err != nil {
			t.Fatalf("in the container: %s: %v\n%s", strings.Join(args, " "), err, errb.Bytes())
		}
		return result{out.Bytes(), errb.Bytes(), err}
	}

	if help := inContainer(); !strings.Contains(string(help.stdout), "rehydrate") {
		t.Fatalf("the default command (%v) printed %q, want the help", cfg.Cmd, help.stdout)
	}
	if got := inContainer("print-stream-json").stdout; !bytes.Equal(got, sm.Raw) {
		t.Fatal("print-stream-json in the container differs from the release's stream.json")
	}
	if got := sha256hex(inContainer("rehydrate", "-", "--disk", "openstack").stdout); got != find(t, sm, "openstack").UncompressedSHA256 {
		t.Fatalf("rehydrate - --disk openstack in the container: sha256 %s", got)
	}

	tarOut := t.TempDir()
	untar := exec.Command("tar", "x", "-C", tarOut)
	untar.Stdin = bytes.NewReader(inContainer("rehydrate", "-", "--iso", "--disk", "qemu").stdout)
	if o, err := untar.CombinedOutput(); err != nil {
		t.Fatalf("rehydrate - --iso --disk qemu | tar x: %v %s", err, o)
	}
	var iso streammeta.Artifact
	for _, a := range sm.Artifacts {
		if a.IsISO() {
			iso = a
		}
	}
	if iso.Name == "" {
		t.Fatal("the all-platforms fixture has no live ISO")
	}
	qemu := find(t, sm, "qemu")
	assertOnly(t, tarOut, iso.Name, qemu.Name)
	for _, a := range []streammeta.Artifact{iso, qemu} {
		if got := fileSHA(t, filepath.Join(tarOut, a.Name)); got != a.UncompressedSHA256 {
			t.Fatalf("%s from the container's tar stream: sha256 %s", a.Name, got)
		}
	}

	// podman run -v .:/out IMAGE rehydrate /out --disk metal: a directory DEST, and a recipe
	// that spools the decoded baseline under the image's TMPDIR.
	if err := os.Mkdir(filepath.Join(rootfs, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	inContainer("rehydrate", "/out", "--disk", "metal")
	metal := find(t, sm, "metal")
	assertOnly(t, filepath.Join(rootfs, "out"), metal.Name)
	if got := fileSHA(t, filepath.Join(rootfs, "out", metal.Name)); got != metal.UncompressedSHA256 {
		t.Fatalf("%s written in the container: sha256 %s", metal.Name, got)
	}
	pm.run("rm", "rehydrator-e2e")
}

// moduleRoot is the repository root (where go.mod and the Containerfile are).
func moduleRoot(t *testing.T) string {
	t.Helper()
	gomod := strings.TrimSpace(tool(t, "go", "env", "GOMOD"))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("not inside the rehydrator module")
	}
	return filepath.Dir(gomod)
}

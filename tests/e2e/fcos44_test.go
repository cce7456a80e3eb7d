package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rehydrator/rehydrator/internal/testregistry"
	"github.com/rehydrator/rehydrator/tests/fixtures"
)

// shippedRule is what the stream metadata says one artifact must rehydrate to, read from the
// stream file itself rather than from streammeta, so that the test judges streammeta too.
type shippedRule struct {
	id      string // arch/platform/format/kind, as streammeta.Artifact.ID
	shipped string // file name in the release directory
	name    string // file name rehydrate must write
	sha256  string // its SHA-256: uncompressed-sha256 where given, else sha256
}

// streamRules lists every file the stream metadata names, with the checksum rule of the real
// stream: a file with an uncompressed-sha256 comes out without its .xz/.gz/.zip and is held to
// it; a file with sha256 only (gcp .tar.gz, nutanix .qcow2, the OVAs, kubevirt .ociarchive)
// comes out as the shipped file itself.
func streamRules(t *testing.T, raw []byte) []shippedRule {
	t.Helper()
	var doc struct {
		Architectures map[string]struct {
			Artifacts map[string]struct {
				Formats map[string]map[string]struct {
					Location     string `json:"location"`
					SHA256       string `json:"sha256"`
					Uncompressed string `json:"uncompressed-sha256"`
				} `json:"formats"`
			} `json:"artifacts"`
		} `json:"architectures"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var rules []shippedRule
	for arch, a := range doc.Architectures {
		for platform, p := range a.Artifacts {
			for format, f := range p.Formats {
				for kind, e := range f {
					r := shippedRule{id: arch + "/" + platform + "/" + format + "/" + kind, shipped: filepath.Base(e.Location)}
					r.name, r.sha256 = r.shipped, e.SHA256
					if e.Uncompressed != "" {
						ext := filepath.Ext(r.shipped)
						if ext != ".xz" && ext != ".gz" && ext != ".zip" {
							t.Fatalf("%s: %s has an uncompressed-sha256 but no .xz/.gz/.zip", r.id, r.shipped)
						}
						r.name, r.sha256 = strings.TrimSuffix(r.shipped, ext), e.Uncompressed
					}
					rules = append(rules, r)
				}
			}
		}
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].id < rules[j].id })
	return rules
}

// TestFCOS44Release dehydrates the fcos-44 fixture release (osbuild's 2026 shape, every x86_64
// disk platform) into an OCI layout, rehydrates every artifact from it, pushes the image to a
// real registry and rehydrates a subset from there. Only output bytes are judged, never the
// route an artifact took: routes change, the stream's checksums do not.
func TestFCOS44Release(t *testing.T) {
	start := time.Now()
	rel, sm := release(t, fixtures.TestOptions44())
	t.Logf("fixture release ready after %s", time.Since(start).Round(time.Second))
	raw, err := os.ReadFile(rel.StreamPath)
	if err != nil {
		t.Fatal(err)
	}
	rules := streamRules(t, raw)
	byDisk := map[string]shippedRule{}
	for _, r := range rules {
		a, ok := sm.Find(r.id)
		if !ok {
			t.Fatalf("streammeta dropped %s", r.id)
		}
		if a.Name != r.name {
			t.Fatalf("%s: streammeta names the rehydrated file %q, the stream's checksums say %q", r.id, a.Name, r.name)
		}
		byDisk[a.DiskName()] = r
	}
	if len(sm.Artifacts) != len(rules) || len(rules) != len(fixtures.AllPlatforms44) {
		t.Fatalf("stream names %d files, streammeta %d, the fcos-44 profile has %d platforms", len(rules), len(sm.Artifacts), len(fixtures.AllPlatforms44))
	}
	for _, p := range fixtures.AllPlatforms44 {
		if _, ok := byDisk[p]; !ok {
			t.Fatalf("the release has no %s disk", p)
		}
	}
	for _, d := range []string{"gcp", "nutanix", "vmware", "virtualbox", "kubevirt"} {
		if r := byDisk[d]; r.name != r.shipped {
			t.Fatalf("%s: the stream gives an uncompressed-sha256 for %s; the real stream gives sha256 only", d, r.shipped)
		}
	}

	work := t.TempDir()
	layoutRef := "oci:" + filepath.Join(work, "layout") + ":stable"
	step := time.Now()
	report := filepath.Join(t.TempDir(), "report.json")
	mustRun(t, "build", rel.Dir, "--output", layoutRef, "--level", "1", "-q", "--report", report)

	// metal4k is made by its own pipeline (4096-byte sectors, its own mkfs, the files copied in
	// another order), so its file data sits elsewhere than in the baseline; issue 10's target is
	// at most 2% of its size in the image.
	t.Run("metal4k cost", func(t *testing.T) {
		checkMetal4kCost(t, report, find(t, sm, "metal4k").Name)
	})
	t.Logf("build: %s", time.Since(step).Round(time.Second))

	t.Run("print-stream-json", func(t *testing.T) {
		if got := mustRun(t, "print-stream-json", "--image", layoutRef); !bytes.Equal(got, raw) {
			t.Fatal("print-stream-json differs from the release's stream.json")
		}
	})

	t.Run("every artifact from the layout", func(t *testing.T) {
		step := time.Now()
		out := t.TempDir()
		mustRun(t, "rehydrate", out, "--all", "--image", layoutRef, "--tmpdir", t.TempDir())
		t.Logf("rehydrate --all: %s", time.Since(step).Round(time.Second))
		var names []string
		for _, r := range rules {
			checkRule(t, out, r)
			names = append(names, r.name)
		}
		sort.Strings(names)
		assertOnly(t, out, names...)
		origDir := t.TempDir()
		for _, a := range sm.Artifacts {
			if strings.HasSuffix(a.Name, ".qcow2") {
				p := filepath.Join(out, a.Name)
				tool(t, "qemu-img", "check", "-f", "qcow2", p)
				tool(t, "qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", p, original(t, rel, a, origDir))
			}
		}
	})

	t.Run("tar stream", func(t *testing.T) {
		disks := []string{"gcp", "kubevirt", "hyperv"}
		var args, names []string
		for _, d := range disks {
			args = append(args, "--disk", d)
			names = append(names, byDisk[d].name)
		}
		dir := rehydrateTar(t, append(args, "--image", layoutRef)...)
		sort.Strings(names)
		assertOnly(t, dir, names...)
		for _, d := range disks {
			checkRule(t, dir, byDisk[d])
		}
	})

	t.Run("registry", func(t *testing.T) {
		reg := testregistry.Start(t)
		ref := "docker://" + reg.Host() + "/fcos/fcos-images:44"
		skopeoCopy(t, layoutRef, ref)
		if got := mustRun(t, "print-stream-json", "--image", ref); !bytes.Equal(got, raw) {
			t.Fatal("print-stream-json from the registry differs from the release's stream.json")
		}
		step := time.Now()
		disks := []string{"openstack", "metal4k", "hyperv", "gcp", "kubevirt", "nutanix", "vmware"}
		out := t.TempDir()
		args := []string{"rehydrate", out, "--image", ref}
		var names []string
		for _, d := range disks {
			args = append(args, "--disk", d)
			names = append(names, byDisk[d].name)
		}
		mustRun(t, args...)
		t.Logf("rehydrate %d disks from the registry: %s", len(disks), time.Since(step).Round(time.Second))
		sort.Strings(names)
		assertOnly(t, out, names...)
		for _, d := range disks {
			checkRule(t, out, byDisk[d])
		}
	})

	t.Run("bad input", func(t *testing.T) {
		// powervs is a real Fedora CoreOS platform that this release does not ship; a good disk
		// beside a bad one must not be written either.
		for _, sel := range [][]string{{"--disk", "powervs"}, {"--disk", "qemu", "--disk", "powervs"}} {
			out := t.TempDir()
			failOneLine(t, `no disk "powervs"`, append([]string{"rehydrate", out, "--image", layoutRef}, sel...)...)
			assertOnly(t, out)
			failOneLine(t, `no disk "powervs"`, append([]string{"rehydrate", "-", "--image", layoutRef}, sel...)...)
		}
		out := t.TempDir()
		failOneLine(t, "no live ISO", "rehydrate", out, "--iso", "--image", layoutRef)
		failOneLine(t, "no artifacts for architecture aarch64", "rehydrate", out, "--arch", "aarch64", "--disk", "qemu", "--image", layoutRef)
		assertOnly(t, out)
	})
	t.Logf("total: %s", time.Since(start).Round(time.Second))
}

// checkRule checks the file rehydrated for r in dir bit for bit against the stream metadata.
func checkRule(t *testing.T, dir string, r shippedRule) {
	t.Helper()
	if got := fileSHA(t, filepath.Join(dir, r.name)); got != r.sha256 {
		t.Errorf("%s: %s has sha256 %s, the stream metadata says %s", r.id, r.name, got, r.sha256)
	}
}

// failOneLine runs a command that must exit non-zero with a one-line error naming want and
// nothing on standard output.
func failOneLine(t *testing.T, want string, args ...string) {
	t.Helper()
	r := run(t, nil, args...)
	var exit *exec.ExitError
	if !errors.As(r.err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("rehydrator %s: %v, want a non-zero exit", strings.Join(args, " "), r.err)
	}
	msg := strings.TrimSpace(string(r.stderr))
	if strings.Contains(msg, "\n") || !strings.Contains(msg, want) {
		t.Fatalf("rehydrator %s: error %q, want one line naming %q", strings.Join(args, " "), msg, want)
	}
	if len(r.stdout) != 0 {
		t.Fatalf("rehydrator %s: failed but wrote %d bytes to standard output", strings.Join(args, " "), len(r.stdout))
	}
}

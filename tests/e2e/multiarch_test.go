package e2e

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/internal/testregistry"
	"github.com/rehydrator/rehydrator/streammeta"
	"github.com/rehydrator/rehydrator/tests/fixtures"
)

// TestMultiArch builds an x86_64 and an aarch64 release into one OCI image index, mirrors it
// with skopeo copy --all, and rehydrates each architecture with --arch from the layout and the
// registry; the default is this machine's.
func TestMultiArch(t *testing.T) {
	x86, _ := smallRelease(t)
	arm := fixtures.ForArch(t, x86, "aarch64")
	armRaw, err := os.ReadFile(arm.StreamPath)
	if err != nil {
		t.Fatal(err)
	}
	armSM, err := streammeta.Parse(armRaw)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	armBin := filepath.Join(work, "rehydrator.arm64")
	cmd := exec.Command("go", "build", "-trimpath", "-o", armBin, "github.com/rehydrator/rehydrator/cmd/rehydrator")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOARCH=arm64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cross-compiling the arm64 tool: %v\n%s", err, out)
	}

	layoutDir := filepath.Join(work, "layout")
	ref := "oci:" + layoutDir + ":stable"
	// Refused before the long dehydration: no aarch64 tool for the aarch64 image.
	mustFail(t, nil, "--arch-binary aarch64=PATH", "build", x86.Dir, arm.Dir, "--output", ref, "--level", "1", "-q")
	mustFail(t, nil, "--arch-binary aarch64=PATH", "build", arm.Dir, "--output", ref, "--level", "1", "-q")
	mustRun(t, "build", x86.Dir, arm.Dir, "--arch-binary", "aarch64="+armBin, "--output", ref, "--compression", "gzip", "--level", "1", "-q")

	// skopeo sees an index with one image per platform.
	var idx struct {
		MediaType string
		Manifests []struct {
			Platform struct{ OS, Architecture string }
		}
	}
	if err := json.Unmarshal([]byte(skopeo(t, "inspect", "--raw", ref)), &idx); err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, m := range idx.Manifests {
		plats = append(plats, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	sort.Strings(plats)
	if idx.MediaType != "application/vnd.oci.image.index.v1+json" || strings.Join(plats, " ") != "linux/amd64 linux/arm64" {
		t.Fatalf("image is %s of %v, want an OCI index of linux/amd64 and linux/arm64", idx.MediaType, plats)
	}

	reg := testregistry.Start(t)
	regRef := "docker://" + reg.Host() + "/fcos/multi:stable"
	skopeo(t, "copy", "--all", "--quiet", "--dest-tls-verify=false", ref, regRef)

	for _, src := range []string{ref, regRef} {
		t.Run(strings.SplitN(src, ":", 2)[0], func(t *testing.T) {
			if got := mustRun(t, "print-stream-json", "--arch", "aarch64", "--image", src); !bytes.Equal(got, armRaw) {
				t.Fatal("print-stream-json --arch aarch64 is not the aarch64 release's stream.json")
			}
			checkOne(t, src, armSM, "openstack", "--arch", "aarch64")
			// No --arch: this machine's (the test machines are x86_64).
			_, x86SM := smallRelease(t)
			checkOne(t, src, x86SM, "openstack")
			mustFail(t, nil, "no image for linux/s390x", "rehydrate", t.TempDir(), "--disk", "qemu", "--arch", "s390x", "--image", src)
		})
	}

	// The arm64 image carries the arm64 tool (what podman --arch arm64 would run).
	dir := filepath.Join(work, "arm-image")
	skopeo(t, "copy", "--quiet", "--override-arch", "arm64", ref, "oci:"+dir+":arm")
	f, err := elf.Open(filepath.Join(unpack(t, dir), "usr/bin/rehydrator"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Fatalf("the arm64 image's /usr/bin/rehydrator is for %s", f.Machine)
	}
}

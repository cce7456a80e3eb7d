package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/streammeta"
	"github.com/rehydrator/rehydrator/tests/fixtures"
	"github.com/rehydrator/rehydrator/tests/synthroot"
)

// oldImageDir holds an image made once by an earlier rehydrator (see its README.md). It is
// never rewritten by the tests: old images must keep working.
const oldImageDir = "testdata/old-image"

// makeOldImageEnv, set to 1, makes TestOldImage build the image again from the tiny release.
// Only for a new generation of old image, made by the tool of the commit that adds it.
const makeOldImageEnv = "REHYDRATOR_MAKE_OLD_IMAGE"

// tinySize is a release of a few MiB, so that its image can be checked in: about the smallest
// the fixture layout allows (a root of at least 16 MiB, a boot filesystem big enough for an ext4
// journal, an EFI partition that holds the 4.4 MiB of shim and GRUB stand-ins, cut from at
// least 2.6 MiB of root files).
var tinySize = fixtures.Size{Name: "tiny", DiskBytes: 40 << 20, RootDataBytes: 3 << 20, EFIBytes: 6 << 20,
	BootBytes: 8 << 20, KernelBytes: 64 << 10, InitramfsBytes: 64 << 10}

var tinyTree = synthroot.Spec{Name: "tiny", Seed: 2, Bytes: 7 << 19, Compressible: true}

// TestOldImage rehydrates every artifact of the checked-in old image with the current tool and
// checks each against the SHA-256 the original release had.
func TestOldImage(t *testing.T) {
	if os.Getenv(makeOldImageEnv) == "1" {
		makeOldImage(t)
	}
	sums := readSums(t, filepath.Join(oldImageDir, "SHA256SUMS"))
	ref := "oci:" + filepath.Join(oldImageDir, "layout") + ":old"
	out := t.TempDir()
	mustRun(t, "rehydrate", out, "--all", "--image", ref)
	for name, want := range sums {
		if got := fileSHA(t, filepath.Join(out, name)); got != want {
			t.Errorf("%s: sha256 %s, the original was %s", name, got, want)
		}
	}
	ents, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(sums) {
		t.Errorf("rehydrated %d files, the old release had %d", len(ents), len(sums))
	}
	t.Logf("%d artifacts of the old image rehydrated bit for bit", len(sums))
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("%s: bad line %q", path, sc.Text())
		}
		sums[name] = sum
	}
	if len(sums) == 0 {
		t.Fatalf("%s: empty", path)
	}
	return sums
}

// makeOldImage builds the tiny every-platform release and writes its image (zstd -19 layers, a
// placeholder in place of the tool binary) and the artifacts' SHA-256 into oldImageDir.
func makeOldImage(t *testing.T) {
	roots, err := synthroot.Roots(tinyTree)
	if err != nil {
		t.Fatal(err)
	}
	opt := fixtures.TestOptions()
	opt.Size = tinySize
	opt.Platforms = fixtures.AllPlatforms
	opt.SourceRoots = roots
	rel, sm := release(t, opt)
	if err := os.RemoveAll(oldImageDir + "/layout"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(oldImageDir, 0o755); err != nil {
		t.Fatal(err)
	}
	placeholder := filepath.Join(t.TempDir(), "rehydrator")
	if err := os.WriteFile(placeholder, []byte("#!/bin/sh\necho 'placeholder: this test image carries no rehydrator binary' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "build", rel.Dir, "--output", "oci:"+filepath.Join(oldImageDir, "layout")+":old",
		"--binary", placeholder, "--level", "19", "-q")
	var lines []string
	for _, a := range sm.Artifacts {
		lines = append(lines, fmt.Sprintf("%s  %s", uncompressedSHA(a), a.Name))
	}
	sort.Strings(lines)
	if err := os.WriteFile(filepath.Join(oldImageDir, "SHA256SUMS"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(string(mustRun(t, "list", "--image", "oci:"+filepath.Join(oldImageDir, "layout")+":old")))
}

// uncompressedSHA is the SHA-256 of the artifact as rehydrate writes it: artifacts shipped
// uncompressed have no uncompressed-sha256.
func uncompressedSHA(a streammeta.Artifact) string {
	if a.UncompressedSHA256 != "" {
		return a.UncompressedSHA256
	}
	return a.SHA256
}

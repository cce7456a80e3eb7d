package erofsprecomp

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// erofsUtilsBin is where scripts/build-erofs-utils.sh installs erofs-utils 1.8.6 (the one with
// LZMA); EROFS_UTILS_BIN overrides it.
const erofsUtilsBin = "/var/cache/rehydrator-tools/erofs-utils-1.8.6/bin"

func mkfs(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("EROFS_UTILS_BIN")
	if dir == "" {
		dir = erofsUtilsBin
	}
	p := filepath.Join(dir, "mkfs.erofs")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s missing (%v): run scripts/build-erofs-utils.sh (scripts/setup-debian.sh does) or set EROFS_UTILS_BIN", p, err)
	}
	return p
}

var words = strings.Fields(`the of and to in is that for it as was with be by on not he this are or
	his from at which but have an they you were her she there been one all we their has would when
	if so no will more can out up other into what could time only new some about these two may
	first then do any like my now over such our man me even most made after also did many before`)

func textBytes(r *rand.Rand, n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

var (
	treeOnce sync.Once
	treeDir  string
	treeErr  error
)

// tree writes a small /usr-like tree once: many small text files, some random ones, real
// binaries of this machine, duplicated files and a few large ones.
func tree(t testing.TB) string {
	t.Helper()
	treeOnce.Do(func() {
		treeDir, treeErr = os.MkdirTemp("", "erofsprecomp-tree-")
		if treeErr != nil {
			return
		}
		r := rand.New(rand.NewPCG(5, 6))
		put := func(p string, b []byte) {
			full := filepath.Join(treeDir, p)
			if treeErr == nil {
				treeErr = os.MkdirAll(filepath.Dir(full), 0o755)
			}
			if treeErr == nil {
				treeErr = os.WriteFile(full, b, 0o644)
			}
		}
		for i := range 300 {
			put(fmt.Sprintf("doc/t%03d.txt", i), textBytes(r, 1+r.IntN(5000)))
		}
		for i := range 20 {
			b := make([]byte, 1+r.IntN(20000))
			for k := range b {
				b[k] = byte(r.Uint32())
			}
			put(fmt.Sprintf("rand/r%02d.bin", i), b)
		}
		for i, name := range []string{"ls", "cp", "gzip", "sed", "xz"} {
			if b, err := os.ReadFile(filepath.Join("/usr/bin", name)); err == nil {
				put(fmt.Sprintf("bin/%s", name), b)
				if i%3 == 0 {
					put(fmt.Sprintf("bin/copy-of-%s", name), b)
				}
			}
		}
		big := textBytes(r, 1200<<10)
		put("large/text", big)
		put("large/text-again", big[:900<<10])
		mixed := append(textBytes(r, 300<<10), make([]byte, 300<<10)...)
		put("large/mixed", append(mixed, textBytes(r, 200<<10)...))
	})
	if treeErr != nil {
		t.Fatalf("generate tree: %v", treeErr)
	}
	return treeDir
}

// image makes an image of the tree with mkfs.erofs and the given options.
func image(t testing.TB, args ...string) []byte {
	t.Helper()
	dir := tree(t)
	out := filepath.Join(t.TempDir(), "img.erofs")
	a := append([]string{"--quiet", "-T1700000000", "-U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f"}, args...)
	a = append(a, out, dir)
	if b, err := exec.Command(mkfs(t), a...).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.erofs %s: %v: %s", strings.Join(a, " "), err, b)
	}
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// roundTrip scans, expands and restores img and checks the result is img.
func roundTrip(t *testing.T, img []byte) *Plan {
	t.Helper()
	plan, err := Scan(bytes.NewReader(img), int64(len(img)), 2)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	var exp bytes.Buffer
	if err := Expand(&exp, bytes.NewReader(img), int64(len(img)), plan); err != nil {
		t.Fatalf("expand: %v", err)
	}
	if got, want := int64(exp.Len()), plan.ExpandedSize(int64(len(img))); got != want {
		t.Errorf("expanded %d bytes, ExpandedSize says %d", got, want)
	}
	var back bytes.Buffer
	if err := Restore(&back, bytes.NewReader(exp.Bytes()), 2); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if !bytes.Equal(back.Bytes(), img) {
		t.Fatalf("restored image differs (%d bytes, want %d)", back.Len(), len(img))
	}
	return plan
}

func TestMain(m *testing.M) {
	code := m.Run()
	if treeDir != "" {
		os.RemoveAll(treeDir)
	}
	os.Exit(code)
}

// small leaves the large files out, to keep the many images of TestRoundTrip quick.
const small = "--exclude-regex=^large"

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		args []string
		all  bool // every cluster must reproduce
	}{
		{"fcos", []string{"-zlzma,level=6", "-Efragments", "-C1048576"}, true},
		{"C1048576", []string{"-zlzma,level=6", "-C1048576"}, true},
		{"C65536", []string{"-zlzma,level=6", "-C65536"}, true},
		{"C4096", []string{"-zlzma,level=6", "-C4096", small}, true},
		{"fragments", []string{"-zlzma,level=6", "-Efragments", "-C65536", small}, true},
		{"dedupe", []string{"-zlzma,level=6", "-Ededupe", "-C65536"}, true},
		{"ztailpacking", []string{"-zlzma,level=6", "-Eztailpacking", "-C16384", small}, true},
		{"all", []string{"-zlzma,level=6", "-Efragments,dedupe,ztailpacking", "-C65536"}, true},
		{"dictsize", []string{"-zlzma,level=6,dictsize=65536", "-C65536", small}, true},
		{"extreme", []string{"-zlzma,level=109", "-C65536", small}, true},
	}
	for lvl := range 10 {
		if lvl != 6 {
			cases = append(cases, struct {
				name string
				args []string
				all  bool
			}{fmt.Sprintf("level%d", lvl), []string{fmt.Sprintf("-zlzma,level=%d", lvl), "-C65536", small}, true})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := image(t, c.args...)
			plan := roundTrip(t, img)
			var explicit int
			for _, cl := range plan.Clusters {
				if cl.Explicit {
					explicit++
				}
			}
			t.Logf("%s: %d of %d clusters reproduce (%d explicit lookaheads), %v; image %d bytes, expanded %d",
				strings.Join(c.args, " "), len(plan.Clusters), plan.Seen, explicit, plan.Params, len(img), plan.ExpandedSize(int64(len(img))))
			if !haveLZMA() {
				if len(plan.Clusters) != 0 {
					t.Errorf("without cgo %d clusters expanded", len(plan.Clusters))
				}
				return
			}
			if c.all && len(plan.Clusters) != plan.Seen {
				t.Errorf("%d of %d clusters reproduce, want all", len(plan.Clusters), plan.Seen)
			}
			if plan.Seen == 0 {
				t.Errorf("no LZMA clusters in the image")
			}
		})
	}
}

// mixedImage has two LZMA configs: level 6 for most files, level 1 (compress hints) for doc/.
func mixedImage(t *testing.T) []byte {
	hints := filepath.Join(t.TempDir(), "hints")
	if err := os.WriteFile(hints, []byte("65536 1 ^doc/\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return image(t, "-zlzma,level=6:lzma,level=1", "-C65536", "--compress-hints="+hints, small)
}

func TestMixedSettings(t *testing.T) {
	if !haveLZMA() {
		t.Skip("built without cgo: TestRoundTrip checks that nothing is expanded")
	}
	img := mixedImage(t)
	plan := roundTrip(t, img)
	t.Logf("%d of %d clusters reproduce with %v", len(plan.Clusters), plan.Seen, plan.Params)
	if len(plan.Clusters) != plan.Seen || len(plan.Params) != 2 {
		t.Errorf("%d of %d clusters reproduce with %v, want all with two settings", len(plan.Clusters), plan.Seen, plan.Params)
	}
}

// TestOtherSettingsStayCompressed plays a release made by another liblzma: the clusters made
// with settings this build does not find travel compressed and the image stays exact.
func TestOtherSettingsStayCompressed(t *testing.T) {
	if !haveLZMA() {
		t.Skip("built without cgo: TestRoundTrip checks that nothing is expanded")
	}
	img := mixedImage(t)
	defer func(p []uint32) { presets = p }(presets)
	presets = []uint32{6}
	plan := roundTrip(t, img)
	t.Logf("preset 6 only: %d of %d clusters reproduce", len(plan.Clusters), plan.Seen)
	if len(plan.Clusters) == 0 || len(plan.Clusters) == plan.Seen {
		t.Errorf("%d of %d clusters reproduce, want some but not all", len(plan.Clusters), plan.Seen)
	}
	presets = nil
	plan = roundTrip(t, img)
	if len(plan.Clusters) != 0 || len(plan.Params) != 0 {
		t.Errorf("no preset: %d clusters reproduce with %v, want none", len(plan.Clusters), plan.Params)
	}
}

package filemap_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/filemap/fslist"
	"github.com/rehydrator/rehydrator/internal/testtree"
	"github.com/rehydrator/rehydrator/precomp"
)

// TestSyntheticBasePays builds one tree of many small files into ext4 images (the disk's root
// filesystem) and a squashfs of zstd blocks (the live ISO's, as the fcos-41 fixture makes it),
// expands the squashfs as the ISO route does, and compares the any-order delta of the expanded
// squashfs against each ext4 image with the delta against the synthetic base. Two ext4 layouts:
// mkfs.ext4 -d, which writes file data in the tree's walk order (close to mksquashfs's), and the
// same files written by debugfs in a shuffled order, as a real disk has them (ostree writes its
// objects in content-hash order, unrelated to paths). FILEMAP_SMALL sets the number of small
// files (default 3000).
func TestSyntheticBasePays(t *testing.T) {
	if precomp.Version() == "" {
		t.Fatal("precomp has no libzstd in this build (cgo off): the squashfs cannot be expanded")
	}
	small := 3000
	if v, err := strconv.Atoi(os.Getenv("FILEMAP_SMALL")); err == nil {
		small = v
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	files, err := testtree.Write(tree, testtree.Spec{Seed: 41, Small: small, Medium: small / 50, Large: 4})
	if err != nil {
		t.Fatal(err)
	}
	imgSize := int64(small)*8192 + 64<<20
	// As tests/fixtures makeExt4 and the live builder's mksquashfs call.
	const uuid = "2d7c7ef5-9e5b-4f3a-9a39-1e2f0b6f3a11"
	mkfs := []string{"-q", "-F", "-b", "4096", "-L", "root", "-U", uuid, "-E", "hash_seed=" + uuid + ",root_owner=0:0,nodiscard"}
	inOrder := filepath.Join(dir, "in-order.ext4")
	sparse(t, inOrder, imgSize)
	run(t, "mkfs.ext4", append(mkfs, "-d", tree, inOrder)...)
	shuffled := filepath.Join(dir, "shuffled.ext4")
	sparse(t, shuffled, imgSize)
	run(t, "mkfs.ext4", append(mkfs, shuffled)...)
	var cmds strings.Builder
	made := map[string]bool{}
	for _, f := range files {
		for d := filepath.Dir(f); d != "." && !made[d]; d = filepath.Dir(d) {
			made[d] = true
		}
	}
	var dirs []string
	for d := range made {
		dirs = append(dirs, d)
	}
	sort.Slice(dirs, func(i, j int) bool {
		return len(dirs[i]) < len(dirs[j]) || (len(dirs[i]) == len(dirs[j]) && dirs[i] < dirs[j])
	})
	for _, d := range dirs {
		fmt.Fprintf(&cmds, "mkdir /%s\n", d)
	}
	for _, i := range rand.New(rand.NewSource(7)).Perm(len(files)) {
		fmt.Fprintf(&cmds, "write %s /%s\n", filepath.Join(tree, files[i]), files[i])
	}
	cmdFile := filepath.Join(dir, "debugfs.cmds")
	os.WriteFile(cmdFile, []byte(cmds.String()), 0o644)
	run(t, "debugfs", "-w", "-f", cmdFile, shuffled)

	sqImg := filepath.Join(dir, "root.squashfs")
	run(t, "mksquashfs", tree, sqImg, "-comp", "zstd", "-noappend", "-no-progress", "-quiet", "-exit-on-error", "-all-root", "-all-time", "1700000000", "-mkfs-time", "1700000000")
	sq, err := os.ReadFile(sqImg)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := precomp.Scan(bytes.NewReader(sq), int64(len(sq)))
	if err != nil {
		t.Fatal(err)
	}
	var expanded bytes.Buffer
	if err := precomp.Expand(&expanded, bytes.NewReader(sq), int64(len(sq)), plan); err != nil {
		t.Fatal(err)
	}
	target := expanded.Bytes()
	t.Logf("squashfs %.1f MB (%d zstd frames expanded), expanded %.1f MB", mb(int64(len(sq))), len(plan.Frames), mb(int64(len(target))))
	t.Logf("| ext4 layout | base | literal bytes | delta bytes (+ map) | of the squashfs |")
	for _, img := range []struct{ name, path string }{{"mkfs.ext4 -d (walk order)", inOrder}, {"debugfs write (shuffled)", shuffled}} {
		base, err := os.ReadFile(img.path)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		m, err := synthesize(base, sq, plan, int64(len(target)))
		if err != nil {
			t.Fatal(err)
		}
		mapTime := time.Since(start)
		enc, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		direct, withMap := compare(t, base, target, m)
		st := m.Stats
		t.Logf("| %s | ext4 image | %d | %d | %.1f%% |", img.name, direct.LiteralBytes, direct.DeltaSize, pct(direct.DeltaSize, len(sq)))
		t.Logf("| %s | synthetic (map + ext4) | %d | %d + %d | %.1f%% |", img.name, withMap.LiteralBytes, withMap.DeltaSize, len(enc), pct(withMap.DeltaSize+int64(len(enc)), len(sq)))
		t.Logf("  %s: %d target files, %d paired by path, %d by content; %.1f of %.1f MB of file data mapped in %d runs, map built in %v",
			img.name, st.TargetFiles, st.ByPath, st.ByContent, mb(st.MappedBytes), mb(st.TargetBytes), len(m.Runs), mapTime.Round(time.Millisecond))
		if st.ByPath != st.TargetFiles {
			t.Errorf("%s: paired %d of %d files by path", img.name, st.ByPath, st.TargetFiles)
		}
		if withMap.LiteralBytes > direct.LiteralBytes {
			t.Errorf("%s: the synthetic base leaves %d literal bytes, the ext4 image %d", img.name, withMap.LiteralBytes, direct.LiteralBytes)
		}
	}
}

func sparse(t *testing.T, p string, size int64) {
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func pct(n int64, of int) float64 { return 100 * float64(n) / float64(of) }

// synthesize lists both filesystems and builds the map, as the ISO route would.
func synthesize(base, sq []byte, plan *precomp.Plan, expandedSize int64) (*filemap.Map, error) {
	bfiles, err := fslist.Root(bytes.NewReader(base), 0, int64(len(base)))
	if err != nil {
		return nil, err
	}
	exp, err := fslist.Expansion(plan, int64(len(sq)))
	if err != nil {
		return nil, err
	}
	tfiles, err := fslist.Squashfs(bytes.NewReader(sq), 0, int64(len(sq)), exp)
	if err != nil {
		return nil, err
	}
	return filemap.Build(bfiles, tfiles, expandedSize, filemap.Options{Tail: int64(len(base))})
}

// compare checks that every mapped byte of the synthetic base is the target's own (the listers,
// the expansion and the map agree), then computes the any-order delta of target against base
// and against the synthetic base, checking the latter with PatchAt.
func compare(t *testing.T, base, target []byte, m *filemap.Map) (direct, withMap delta.Stats) {
	t.Helper()
	syn := filemap.NewReader(bytes.NewReader(base), m)
	synBytes := make([]byte, len(target))
	if _, err := syn.ReadAt(synBytes, 0); err != nil {
		t.Fatal(err)
	}
	for _, r := range m.Runs {
		if !bytes.Equal(synBytes[r.Target:r.Target+r.Length], target[r.Target:r.Target+r.Length]) {
			t.Fatalf("run %+v: the synthetic base differs from the target", r)
		}
	}
	direct, _ = deltaOf(t, bytes.NewReader(base), int64(len(base)), target)
	withMap, d := deltaOf(t, syn, syn.Size(), target)
	var out bytes.Buffer
	if err := delta.PatchAt(syn, syn.Size(), bytes.NewReader(d), &out); err != nil || !bytes.Equal(out.Bytes(), target) {
		t.Fatalf("PatchAt over the synthetic base does not give the target back: %v", err)
	}
	return direct, withMap
}

func deltaOf(t *testing.T, base interface {
	ReadAt([]byte, int64) (int, error)
}, baseSize int64, target []byte) (delta.Stats, []byte) {
	t.Helper()
	var d bytes.Buffer
	st, err := delta.Compute(base, baseSize, bytes.NewReader(target), int64(len(target)), &d, delta.Options{AnyOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	return st, d.Bytes()
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SOURCE_DATE_EPOCH=") { // mksquashfs refuses it beside -all-time
			cmd.Env = append(cmd.Env, e)
		}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func mb(n int64) float64 { return float64(n) / 1e6 }

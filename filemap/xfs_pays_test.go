package filemap_test

import (
	"bytes"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/filemap/fslist"
	"github.com/rehydrator/rehydrator/internal/testtree"
)

// TestSyntheticBaseXFS is the fcos-44 metal4k case: the same tree in an XFS of 512-byte sectors
// in walk order (metal's root, the base) and one of 4096-byte sectors whose directories list
// their entries in another order (the fixture's metal4k: its own mkfs.xfs -p run, entries
// ranked by hash), so the files sit elsewhere. Any-order delta direct vs through the synthetic
// base. FILEMAP_SMALL sets the number of small files (default 3000).
func TestSyntheticBaseXFS(t *testing.T) {
	small := 3000
	if v, err := strconv.Atoi(os.Getenv("FILEMAP_SMALL")); err == nil {
		small = v
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	if _, err := testtree.Write(tree, testtree.Spec{Seed: 44, Small: small, Medium: small / 50, Large: 4}); err != nil {
		t.Fatal(err)
	}
	rank := func(name string) uint64 { // as tests/fixtures pathRank("4k "+name)
		h := fnv.New64a()
		io.WriteString(h, "4k "+name)
		return h.Sum64()
	}
	mk := func(name string, r func(string) uint64, extra ...string) []byte {
		p, err := testtree.Proto(tree, r)
		if err != nil {
			t.Fatal(err)
		}
		proto := filepath.Join(dir, name+".proto")
		os.WriteFile(proto, p, 0o644)
		img := filepath.Join(dir, name+".xfs")
		sparse(t, img, 320<<20)
		// faketime pins the inodes' times, as the fixture builder does: the figures repeat.
		run(t, "faketime", append(append([]string{"-f", "2024-01-01 00:00:00", "mkfs.xfs", "-q", "-m", "uuid=a0e4f1f6-5c3e-4a4b-9a41-3c2d1e0f9b87", "-L", "root", "-d", "agcount=2"}, extra...), "-p", proto, img)...)
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	base := mk("metal", nil)
	target := mk("metal4k", rank, "-s", "size=4096")

	list := func(img []byte) []filemap.File {
		files, err := fslist.Root(bytes.NewReader(img), 0, int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	m, err := filemap.Build(list(base), list(target), int64(len(target)), filemap.Options{Tail: int64(len(base))})
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := m.MarshalBinary()
	direct, withMap := compare(t, base, target, m)
	st := m.Stats
	t.Logf("%d files paired by path of %d; %.1f of %.1f MB mapped in %d runs; images %.0f MB", st.ByPath, st.TargetFiles, mb(st.MappedBytes), mb(st.TargetBytes), len(m.Runs), mb(int64(len(target))))
	t.Logf("| base | literal bytes | delta bytes (+ map) |")
	t.Logf("| XFS 512 image | %d | %d |", direct.LiteralBytes, direct.DeltaSize)
	t.Logf("| synthetic (map + XFS 512) | %d | %d + %d |", withMap.LiteralBytes, withMap.DeltaSize, len(enc))
	if withMap.LiteralBytes > direct.LiteralBytes {
		t.Errorf("the synthetic base leaves %d literal bytes, the XFS image %d", withMap.LiteralBytes, direct.LiteralBytes)
	}
}

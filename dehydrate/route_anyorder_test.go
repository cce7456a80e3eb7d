package dehydrate

import (
	"context"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/rehydrator/rehydrator/streammeta"
)

// movedDisks makes two raw disks holding the same files, as metal and metal4k do: the base lays
// them out in one order from 1 MiB, the target in another order from 3 MiB + 8 KiB, 4 KiB
// aligned, with other metadata blocks between them. Sizes go from 100 bytes (smaller than an
// index block) to 96 KiB, and the files are random (incompressible), so what the delta misses
// shows in its cost.
func movedDisks(rng *rand.Rand) (base, target []byte) {
	const size, nfiles = 16 << 20, 200
	files := make([][]byte, nfiles)
	for i := range files {
		n := 100 + rng.Intn(96<<10)
		if i%3 == 0 {
			n = 100 + rng.Intn(3000) // small files: one block, far from their neighbours
		}
		files[i] = make([]byte, n)
		rng.Read(files[i])
	}
	lay := func(order []int, at int64) []byte {
		disk := make([]byte, size)
		for k, i := range order {
			if k%16 == 0 { // a metadata block of this disk's own
				rng.Read(disk[at : at+4096])
				at += 4096
			}
			copy(disk[at:], files[i])
			at += (int64(len(files[i])) + 4095) / 4096 * 4096
		}
		return disk
	}
	order := make([]int, nfiles)
	for i := range order {
		order[i] = i
	}
	base = lay(order, 1<<20)
	rng.Shuffle(nfiles, func(i, j int) { order[i], order[j] = order[j], order[i] })
	target = lay(order, 3<<20+8<<10)
	return base, target
}

// movedRelease is a release of the base as qemu.qcow2 and the target as metal4k.raw.
func movedRelease(t *testing.T) (dir string, size int64) {
	t.Helper()
	dir, work := t.TempDir(), t.TempDir()
	base, target := movedDisks(rand.New(rand.NewSource(11)))
	baseRaw := filepath.Join(work, "base.raw")
	if err := os.WriteFile(baseRaw, base, 0o644); err != nil {
		t.Fatal(err)
	}
	qemu := filepath.Join(dir, "f-qemu.x86_64.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", baseRaw, qemu)
	metal4k := filepath.Join(dir, "f-metal4k.x86_64.raw")
	if err := os.WriteFile(metal4k, target, 0o644); err != nil {
		t.Fatal(err)
	}
	entry := func(path string) map[string]string {
		usum := fileSum(t, path)
		run(t, "xz", "-0", "-T2", path)
		return map[string]string{"location": "https://example.com/b/" + filepath.Base(path) + ".xz",
			"sha256": fileSum(t, path+".xz"), "uncompressed-sha256": usum}
	}
	artifacts := map[string]any{
		"qemu":  map[string]any{"release": "1", "formats": map[string]any{"qcow2.xz": map[string]any{"disk": entry(qemu)}}},
		"metal": map[string]any{"release": "1", "formats": map[string]any{"4k.raw.xz": map[string]any{"disk": entry(metal4k)}}},
	}
	doc := map[string]any{"stream": "stable", "metadata": map[string]string{"last-modified": "2026-11-01T00:00:00Z"},
		"architectures": map[string]any{"x86_64": map[string]any{"artifacts": artifacts}}}
	js, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "stream.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, int64(len(target))
}

// A raw disk whose files moved is stored as an any-order delta: the forward-only delta loses
// every file that moved backward; the any-order one carries only the metadata blocks. Dehydrate
// self-checks the recipe, so the disk also rehydrates bit for bit (patch applies the delta with
// random access to the decoded baseline).
func TestMovedDataRoute(t *testing.T) {
	rel, size := movedRelease(t)
	plan := func(rs []route) Plan {
		saved := routes
		routes = rs
		defer func() { routes = saved }()
		res, err := Dehydrate(context.Background(), rel, Options{WorkDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Plans {
			if methods(&Result{Plans: []Plan{p}})["metal4k.x86_64.raw"] != "" {
				return p
			}
		}
		t.Fatal("no plan for metal4k")
		return Plan{}
	}
	moved := reflect.ValueOf(movedData).Pointer()
	without := plan(slices.DeleteFunc(slices.Clone(routes), func(r route) bool { return reflect.ValueOf(r).Pointer() == moved }))
	with := plan(routes)
	t.Logf("metal4k (%d bytes): without the route %s (%d bytes stored), with it %s, %d bytes compressed", size, without.Method, without.StoredBytes, with.Method, with.PackedBytes)
	if with.Method != "qcow2-decode+delta" {
		t.Errorf("method %q, want qcow2-decode+delta", with.Method)
	}
	// The target's own metadata: 13 random 4 KiB blocks (52 KiB), and command overhead.
	if with.PackedBytes > 80<<10 {
		t.Errorf("any-order route costs %d bytes, want only the metadata blocks (about 52 KiB)", with.PackedBytes)
	}
	// Without it, the forward delta is not worth storing (over half the file) or costs much more.
	if without.Method != "whole" && without.PackedBytes < 10*with.PackedBytes {
		t.Errorf("without the route %s of %d bytes, with it %d: expected the moved files to defeat the forward delta", without.Method, without.PackedBytes, with.PackedBytes)
	}
}

// The route is not computed when the best candidate is already cheap (an in-place edit), and is
// above that (here it then fails to open the missing baseline).
func TestMovedDataSkipsCheapDisks(t *testing.T) {
	j := planJob(t)
	j.art.Kind = streammeta.KindDisk
	j.files = []string{filepath.Join(t.TempDir(), "missing.qcow2"), j.file}
	c, err := movedData(context.Background(), j, &candidate{blobs: []*blob{{packed: movedAbove}}})
	if err != nil || c != nil {
		t.Fatalf("movedData ran on a disk whose best costs %d bytes: %v, %v", movedAbove, c, err)
	}
	if _, err := movedData(context.Background(), j, &candidate{blobs: []*blob{{packed: movedAbove + 1}}}); err == nil {
		t.Fatalf("movedData did not run on a disk whose best costs %d bytes", movedAbove+1)
	}
}

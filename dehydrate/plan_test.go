package dehydrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rehydrator/rehydrator/rehydrate"
)

// planJob is a job for a 100 KiB artifact whose routes are given by the test.
func planJob(t *testing.T) *job {
	t.Helper()
	p := &planner{blobDir: t.TempDir(), res: &Result{BlobPaths: map[string]string{}}, recipe: &rehydrate.Recipe{}}
	p.arts = []rehydrate.Artifact{{ID: "base", Name: "base.qcow2"}, {ID: "x", Name: "x.raw", Size: 100 << 10, SHA256: "ab"}}
	return &job{planner: p, art: &p.arts[1], file: "/x.raw", base: 0}
}

// offer is a route whose candidate has a delta blob of the given sizes (a file in the blob
// directory) and the given ops after the patch; calls counts the times it ran.
func offer(t *testing.T, j *job, name string, size, packed int64, final bool, calls *int, ops ...string) route {
	return func(context.Context, *job, *candidate) (*candidate, error) {
		if calls != nil {
			*calls++
		}
		path := filepath.Join(j.blobDir, name)
		if err := os.WriteFile(path, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		steps := []rehydrate.Step{{Op: rehydrate.OpPatch, Blob: "sha256:" + name}}
		for _, op := range ops {
			steps = append(steps, rehydrate.Step{Op: op})
		}
		return &candidate{steps: steps, onBaseline: true, final: final,
			blobs: []*blob{{path: path, digest: "sha256:" + name, size: size, packed: packed, role: "delta"}}}, nil
	}
}

func none(context.Context, *job, *candidate) (*candidate, error) { return nil, nil }

func TestChooseCheapest(t *testing.T) {
	enc := rehydrate.OpQcow2Encode
	for _, c := range []struct {
		name   string
		offers [][2]int64 // stored, packed
		encode []bool     // which offers re-encode a qcow2
		want   string     // the chosen offer, or "whole"
	}{
		{"the cheaper by compressed size", [][2]int64{{100, 30}, {50, 40}}, nil, "o0"},
		{"the earlier on a tie", [][2]int64{{100, 30}, {90, 30}}, nil, "o0"},
		{"none: whole", nil, nil, "whole"},
		{"a delta of half the file: whole", [][2]int64{{50 << 10, 10}}, nil, "whole"},
		{"a delta just under half the file", [][2]int64{{50<<10 - 1, 10}}, nil, "o0"},
		{"the cheaper even if larger before compression", [][2]int64{{40 << 10, 10}, {1 << 10, 900}}, nil, "o0"},
		{"re-encode saving half of over 16 KiB", [][2]int64{{30 << 10, 20 << 10}, {10 << 10, 10<<10 - 1}}, []bool{false, true}, "o1"},
		{"re-encode saving exactly half", [][2]int64{{30 << 10, 20 << 10}, {10 << 10, 10 << 10}}, []bool{false, true}, "o0"},
		{"re-encode against a plain delta of 16 KiB", [][2]int64{{30 << 10, 16 << 10}, {1 << 10, 100}}, []bool{false, true}, "o0"},
		{"re-encode offered first", [][2]int64{{10 << 10, 10<<10 - 1}, {30 << 10, 20 << 10}}, []bool{true, false}, "o0"},
		{"re-encode offered first, not saving half", [][2]int64{{10 << 10, 10<<10 + 1}, {30 << 10, 20 << 10}}, []bool{true, false}, "o1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			j := planJob(t)
			var rs []route
			for i, o := range c.offers {
				var ops []string
				if i < len(c.encode) && c.encode[i] {
					ops = []string{enc}
				}
				rs = append(rs, none, offer(t, j, fmt.Sprintf("o%d", i), o[0], o[1], false, nil, ops...))
			}
			best, err := j.choose(context.Background(), rs)
			if err != nil {
				t.Fatal(err)
			}
			got := best.blobs[0].role
			if got != "whole" {
				got = best.blobs[0].digest[len("sha256:"):]
			}
			if got != c.want {
				t.Fatalf("chose %s, want %s", got, c.want)
			}
			// The losers' delta files are gone, the winner's kept.
			for i := range c.offers {
				name := fmt.Sprintf("o%d", i)
				_, err := os.Stat(filepath.Join(j.blobDir, name))
				if kept := err == nil; kept != (name == c.want) {
					t.Errorf("%s: file kept %v", name, kept)
				}
			}
		})
	}
}

// A final candidate ends the search: the routes after it do not run.
func TestChooseFinal(t *testing.T) {
	j := planJob(t)
	var later int
	best, err := j.choose(context.Background(), []route{offer(t, j, "f", 100, 50, true, nil), offer(t, j, "cheaper", 10, 5, false, &later)})
	if err != nil || best.blobs[0].digest != "sha256:f" || later != 0 {
		t.Fatalf("chose %v (%v), later route ran %d times", best.blobs[0].digest, err, later)
	}
}

// The method names the steps after the baseline's; refs, extracts and whole files by what
// they are.
func TestMethod(t *testing.T) {
	j := planJob(t)
	name := func(id string) string { return map[string]string{"iso": "f-live.iso"}[id] }
	op := func(ops ...string) []rehydrate.Step {
		var s []rehydrate.Step
		for _, o := range ops {
			s = append(s, rehydrate.Step{Op: o})
		}
		return s
	}
	for _, c := range []struct {
		c    *candidate
		want string
	}{
		{&candidate{steps: op("patch"), onBaseline: true}, "delta"},
		{&candidate{steps: op("qcow2-decode", "patch"), onBaseline: true}, "qcow2-decode+delta"},
		{&candidate{steps: op("qcow2-decode", "patch", "qcow2-encode"), onBaseline: true}, "qcow2-decode+delta+qcow2-encode"},
		{&candidate{steps: op("qcow2-decode", "patch", "zstd-restore"), onBaseline: true}, "qcow2-decode+delta+zstd-restore"},
		{&candidate{steps: op("qcow2-decode", "patch", "vmdk-encode", "ova", "patch"), onBaseline: true}, "qcow2-decode+delta+vmdk-encode+ova+delta"},
		{&candidate{steps: []rehydrate.Step{{Op: "ref", Ref: "iso"}, {Op: "extract", Offset: 1, Length: 2}}}, "extract from f-live.iso"},
		{&candidate{steps: []rehydrate.Step{{Op: "ref", Ref: "x86_64-qemu-qcow2"}}}, "same-as x86_64-qemu-qcow2"},
		{j.whole(), "whole"},
	} {
		if got := c.c.method(name); got != c.want {
			t.Errorf("%v: method %q, want %q", c.c.steps, got, c.want)
		}
	}
}

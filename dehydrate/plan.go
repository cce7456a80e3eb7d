package dehydrate

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rehydrator/rehydrator/internal/units"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/streammeta"
)

// A route is one way to store an artifact (routes.go). It returns nil when it does not apply;
// best is the cheapest candidate so far (nil if none), for routes that only pay off against it.
type route func(ctx context.Context, j *job, best *candidate) (*candidate, error)

// routes, in order of preference: a candidate replaces the best so far only when it is cheaper
// (see better), and a final one ends the search.
var routes = []route{
	reuse,       // identical to a baseline: a ref to it
	cutFromISO,  // a PXE file inside the live ISO: cut out of the rehydrated ISO
	deflated,    // gzip, a tar around one big member, compressed qcow2 clusters (route_deflate.go)
	formatSteps, // a format of internal/diskview's table: a guest-view delta, then its steps
	fileDelta,   // a qcow2: a delta of the file
	reencode,    // a qcow2: a guest-view delta, re-encoded with the target's layout
	guestDelta,  // any other disk: a delta against the baseline's guest view
	movedData,   // a raw disk whose data moved (metal4k): an any-order delta (route_anyorder.go)
	precompISO,  // the live ISO: a delta of its expanded zstd frames, compressed again
	erofsISO,    // the live ISO since Fedora 42: a delta of its expanded EROFS clusters (route_erofs.go)
}

// candidate is one way to store an artifact: its steps and the blobs they read.
type candidate struct {
	// steps rebuild the artifact; when onBaseline, they start from the output of its
	// architecture's baseline, whose steps (its blob, and how it is stored) come first.
	steps      []rehydrate.Step
	onBaseline bool
	blobs      []*blob // what it adds to the image
	took       time.Duration
	// final ends the search: nothing later can do better (a ref costs nothing; a recognised
	// format is not worth a plain delta of its compressed bytes).
	final bool
}

// params is what the candidate adds to the recipe: the bytes of its steps' parameters.
func (c *candidate) params() int64 {
	var n int64
	for _, s := range c.steps {
		n += int64(len(s.Params))
	}
	return n
}

// cost is what the candidate adds to the image: its blobs as the layer compression will store
// them (a literal run of zeros costs almost nothing there), and its parameters in the recipe.
func (c *candidate) cost() int64 {
	n := c.params()
	for _, b := range c.blobs {
		n += b.packed
	}
	return n
}

// stored is the bytes the candidate adds before compression: its blobs and parameters.
func (c *candidate) stored() int64 {
	n := c.params()
	for _, b := range c.blobs {
		n += b.size
	}
	return n
}

// reencodes says whether the candidate writes a qcow2 again: it needs the baseline decoded
// (random access, so a spool when read from a registry).
func (c *candidate) reencodes() bool {
	return slices.ContainsFunc(c.steps, func(s rehydrate.Step) bool { return s.Op == rehydrate.OpQcow2Encode })
}

// worth says whether the candidate is worth its rehydration cost: a delta must be much
// smaller than the file (else the file is stored whole).
func (c *candidate) worth(size int64) bool {
	return !c.onBaseline || c.stored() < size/2
}

// reencodeAbove is the compressed size a plain file delta must exceed before the qcow2
// re-encode route may replace it; forceReencode lets tests exercise that route on small images.
var (
	reencodeAbove int64 = 16 << 10
	forceReencode       = false
)

// better says whether c should replace best: the cheaper one, the earlier on a tie. A
// re-encode must save real space against a plain delta, which streams straight out of the
// baseline's layer: half its cost, and the plain delta must be over reencodeAbove.
func (c *candidate) better(best *candidate) bool {
	if best == nil {
		return true
	}
	if c.reencodes() != best.reencodes() {
		plain, enc := best, c
		if !c.reencodes() {
			plain, enc = c, best
		}
		encWins := forceReencode || (plain.cost() > reencodeAbove && enc.cost()*2 < plain.cost())
		return encWins == (c == enc)
	}
	return c.cost() < best.cost()
}

// method names the candidate after its steps (Plan.Method); name gives an artifact's file
// name from its ID.
func (c *candidate) method(name func(id string) string) string {
	s := c.steps
	switch {
	case len(s) == 2 && s[0].Op == rehydrate.OpRef && s[1].Op == rehydrate.OpExtract:
		return "extract from " + name(s[0].Ref)
	case len(s) == 1 && s[0].Op == rehydrate.OpRef:
		return "same-as " + s[0].Ref
	case len(s) == 1 && s[0].Op == rehydrate.OpBlob && len(c.blobs) == 1:
		return c.blobs[0].role
	}
	ops := make([]string, len(s))
	for i, st := range s {
		ops[i] = st.Op
		if st.Op == rehydrate.OpPatch {
			ops[i] = "delta"
		}
	}
	return strings.Join(ops, "+")
}

// job is one artifact being planned.
type job struct {
	*planner
	a    streammeta.Artifact
	art  *rehydrate.Artifact
	file string
	base int // its architecture's baseline, -1 if none
	took time.Duration
}

func (j *job) hasBase() bool { return j.base >= 0 }

// isDisk: a disk image other than the ISO.
func (j *job) isDisk() bool { return j.art.Kind == streammeta.KindDisk && !j.a.IsISO() }

// whole stores the artifact as it is.
func (j *job) whole() *candidate {
	digest := "sha256:" + j.art.SHA256
	return &candidate{steps: []rehydrate.Step{{Op: rehydrate.OpBlob, Blob: digest}},
		blobs: []*blob{{path: j.file, digest: digest, size: j.art.Size, role: "whole"}}, final: true}
}

// choose runs the routes in order and keeps the cheapest candidate; the artifact is stored
// whole when none applies or the best is not worth it.
func (j *job) choose(ctx context.Context, routes []route) (*candidate, error) {
	var best *candidate
	for _, r := range routes {
		c, err := r(ctx, j, best)
		if err != nil {
			return nil, err
		}
		if c == nil {
			continue
		}
		j.took += c.took
		if c.better(best) {
			j.discard(best, c)
			best = c
		} else {
			j.discard(c, best)
		}
		if c.final {
			break
		}
	}
	if best == nil || !best.worth(j.art.Size) {
		j.discard(best, nil)
		best = j.whole()
	}
	return best, nil
}

// discard removes the delta files of a candidate that lost, but not those the winner or
// another artifact uses (blobs are named by their digest).
func (j *job) discard(lost, won *candidate) {
	if lost == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, b := range lost.blobs {
		_, used := j.res.BlobPaths[b.digest]
		if b.role != "delta" || used || (won != nil && slices.ContainsFunc(won.blobs, func(w *blob) bool { return w.path == b.path })) {
			continue
		}
		os.Remove(b.path)
	}
}

// planArtifact chooses how artifact i is stored and records it.
func (p *planner) planArtifact(ctx context.Context, i int) error {
	if p.arts[i].Steps != nil {
		return nil // a baseline
	}
	j := &job{planner: p, a: p.rel.Artifacts[i], art: &p.arts[i], file: p.files[i], base: -1}
	if b, ok := p.bases[j.art.Arch]; ok {
		j.base = b
	}
	c, err := j.choose(ctx, routes)
	if err != nil {
		return fmt.Errorf("%s: %w", j.art.Name, err)
	}
	for _, b := range c.blobs {
		p.addBlob(b)
	}
	steps := c.steps
	if c.onBaseline {
		steps = append(slices.Clone(p.arts[j.base].Steps), c.steps...)
	}
	p.arts[i].Steps = steps
	plan := &p.plans[i]
	plan.Method, plan.StoredBytes, plan.PackedBytes, plan.DeltaTime = c.method(p.nameOf), c.stored(), c.cost(), j.took
	for _, b := range c.blobs {
		plan.Blobs = append(plan.Blobs, b.digest)
	}
	p.mu.Lock()
	p.deltaTime += j.took
	p.mu.Unlock()
	switch {
	case c.onBaseline:
		p.say("%s: %s of %s (%.1fs)", j.art.Name, plan.Method, units.Bytes(plan.StoredBytes), c.took.Seconds())
	case len(c.blobs) > 0:
		p.say("%s: stored whole (%s)", j.art.Name, units.Bytes(j.art.Size))
	case len(c.steps) > 1:
		p.say("%s: %s", j.art.Name, plan.Method)
	}
	return nil
}

// nameOf gives the file name of the artifact with the given ID.
func (p *planner) nameOf(id string) string {
	for k := range p.arts { // by index: other artifacts' Steps are being written
		if p.arts[k].ID == id {
			return p.arts[k].Name
		}
	}
	return id
}

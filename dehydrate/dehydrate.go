// Package dehydrate turns a release (stream.json and the files it lists) into a recipe and the
// blobs it needs: a baseline per architecture, deltas for the artifacts that are cheap to derive
// from it, and whole blobs for the rest. It proves every recipe by running it before it returns.
package dehydrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/internal/units"
	"github.com/rehydrator/rehydrator/internal/workpool"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/streammeta"
)

// Options tune Dehydrate.
type Options struct {
	// WorkDir holds the decompressed artifacts and the blobs; it must have room for every
	// artifact uncompressed. Required.
	WorkDir string
	// Baseline is the platform whose qcow2 disk is stored whole and serves as the base of the
	// deltas (default "qemu").
	Baseline string
	// Jobs bounds the work done in parallel (default: the number of CPUs).
	Jobs int
	// Delta tunes the delta engine.
	Delta delta.Options
	// Generator is recorded in the recipe ("rehydrator VERSION").
	Generator string
	// Progress receives one line per finished piece of work; nil for silence.
	Progress func(msg string)
}

// Plan says how one artifact is stored, for reports and benchmarks.
type Plan struct {
	ID   string
	Name string
	Size int64 // uncompressed size
	// Method says how it is stored: "baseline", "whole", "same-as <id>", "extract from
	// <name>", or, for what is derived from the baseline, its steps after the baseline's
	// joined by "+", a patch read as "delta" ("delta", "qcow2-decode+delta+vhd-fixed").
	Method      string
	StoredBytes int64    // bytes of blobs this artifact adds (before layer compression)
	PackedBytes int64    // the same, compressed: an estimate of what the image pays
	Blobs       []string // the digests of the blobs it adds (none for a ref or an extract)
	DeltaTime   time.Duration
}

// Result is what Dehydrate produced.
type Result struct {
	Recipe     *rehydrate.Recipe
	StreamJSON []byte
	BlobPaths  map[string]string // digest -> file
	Plans      []Plan
	// DeltaTime is the time spent computing deltas (what `rdiff signature` + `rdiff delta` would do).
	DeltaTime time.Duration
}

// Blobs lists the blob files in recipe order.
func (r *Result) Blobs() []string {
	var out []string
	for _, b := range r.Recipe.Blobs {
		out = append(out, r.BlobPaths[b.Digest])
	}
	return out
}

// ErrRelease marks a release directory that cannot be dehydrated as it is.
var ErrRelease = errors.New("bad release")

// Dehydrate reads the release in dir (dir/stream.json and the files it names), checks every
// file against the stream metadata, plans a recipe per artifact and proves each recipe.
func Dehydrate(ctx context.Context, dir string, opt Options) (*Result, error) {
	if opt.WorkDir == "" {
		return nil, errors.New("dehydrate: no work directory")
	}
	if opt.Baseline == "" {
		opt.Baseline = "qemu"
	}
	if opt.Jobs <= 0 {
		opt.Jobs = runtime.NumCPU()
	}
	p, err := newPlanner(dir, opt)
	if err != nil {
		return nil, err
	}
	// 1. Check and decompress every shipped file.
	if err := p.decompress(ctx, dir); err != nil {
		return nil, err
	}
	if err := p.describe(); err != nil {
		return nil, err
	}
	// 2. Baselines, one per architecture.
	if err := p.storeBaselines(ctx); err != nil {
		return nil, err
	}
	// 3. Every other artifact: the cheapest of its routes (plan.go).
	if err := workpool.ForEach(ctx, len(p.arts), opt.Jobs, func(i int) error { return p.planArtifact(ctx, i) }); err != nil {
		return nil, err
	}
	recipe, res := p.recipe, p.res
	recipe.Artifacts = p.arts
	sort.Slice(recipe.Blobs, func(i, j int) bool { return recipe.Blobs[i].Digest < recipe.Blobs[j].Digest })
	recipe.DeclareFeatures()
	if err := recipe.Validate(); err != nil {
		return nil, fmt.Errorf("dehydrate: produced an invalid recipe: %w", err)
	}
	res.Recipe, res.Plans, res.DeltaTime = recipe, p.plans, p.deltaTime

	// 4. Never publish what cannot reproduce itself.
	if err := SelfCheck(ctx, res, opt.WorkDir, opt.Jobs, p.say); err != nil {
		return nil, err
	}
	return res, nil
}

// planner is what the planning of one release shares across its artifacts.
type planner struct {
	opt     Options
	rel     *streammeta.Release
	files   []string // the decompressed artifacts, by index
	arts    []rehydrate.Artifact
	plans   []Plan
	blobDir string
	// bases maps an architecture to its baseline's index; bySHA an uncompressed SHA-256 to
	// the baseline that has it. Both are set before the artifacts are planned.
	bases map[string]int
	bySHA map[string]int

	mu        sync.Mutex // guards what follows
	res       *Result
	recipe    *rehydrate.Recipe
	deltaTime time.Duration
}

func (p *planner) say(format string, args ...any) {
	if p.opt.Progress != nil {
		p.opt.Progress(fmt.Sprintf(format, args...))
	}
}

// newPlanner reads dir/stream.json, checks that every file it lists is there and makes the
// work directories.
func newPlanner(dir string, opt Options) (*planner, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "stream.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v (a release directory holds stream.json and the files it lists)", ErrRelease, err)
	}
	rel, err := streammeta.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s/stream.json: %v", ErrRelease, dir, err)
	}
	var missing []string
	for _, a := range rel.Artifacts {
		if _, err := os.Stat(filepath.Join(dir, a.ShippedName)); err != nil {
			missing = append(missing, a.ShippedName)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %d file(s) listed in stream.json are missing from %s: %s", ErrRelease, len(missing), dir, strings.Join(missing, ", "))
	}
	p := &planner{opt: opt, rel: rel, blobDir: filepath.Join(opt.WorkDir, "blobs"),
		res:    &Result{StreamJSON: raw, BlobPaths: map[string]string{}},
		recipe: &rehydrate.Recipe{SchemaVersion: rehydrate.SchemaVersion, Generator: opt.Generator}}
	for _, d := range []string{filepath.Join(opt.WorkDir, "files"), p.blobDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// decompress checks and decompresses every shipped file into the work directory.
func (p *planner) decompress(ctx context.Context, dir string) error {
	p.files = make([]string, len(p.rel.Artifacts))
	return workpool.ForEach(ctx, len(p.rel.Artifacts), p.opt.Jobs, func(i int) error {
		a := p.rel.Artifacts[i]
		start := time.Now()
		out := filepath.Join(p.opt.WorkDir, "files", a.Name)
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		n, err := streammeta.Decompress(ctx, a, filepath.Join(dir, a.ShippedName), bw)
		if err == nil {
			err = bw.Flush()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(out)
			return fmt.Errorf("%w: %v", ErrRelease, err)
		}
		p.files[i] = out
		p.say("checked %s (%s, %.1fs)", a.ShippedName, units.Bytes(n), time.Since(start).Seconds())
		return nil
	})
}

// describe fills in each artifact's identity and size.
func (p *planner) describe() error {
	p.arts = make([]rehydrate.Artifact, len(p.rel.Artifacts))
	p.plans = make([]Plan, len(p.rel.Artifacts))
	for i, a := range p.rel.Artifacts {
		p.arts[i] = rehydrate.Artifact{ID: a.ID(), Arch: a.Arch, Platform: a.Platform, Format: a.Format,
			Kind: a.Kind, Name: a.Name, Disk: a.DiskName(), SHA256: a.UncompressedSHA256}
		st, err := os.Stat(p.files[i])
		if err != nil {
			return err
		}
		p.arts[i].Size = st.Size()
		p.plans[i] = Plan{ID: a.ID(), Name: a.Name, Size: st.Size()}
	}
	return nil
}

// storeBaselines stores one baseline per architecture: its platform's qcow2 disk.
func (p *planner) storeBaselines(ctx context.Context) error {
	p.bases, p.bySHA = map[string]int{}, map[string]int{}
	for i, a := range p.rel.Artifacts {
		if a.Kind == streammeta.KindDisk && a.Platform == p.opt.Baseline && strings.HasPrefix(a.Format, "qcow2") && isQcow2(p.files[i]) {
			p.bases[a.Arch] = i
		}
	}
	for _, arch := range p.rel.Arches() {
		if _, ok := p.bases[arch]; !ok {
			p.say("warning: no %s qcow2 disk for %s: its artifacts are stored whole", p.opt.Baseline, arch)
		}
	}
	for _, i := range sortedValues(p.bases) {
		steps, path, size, err := storeBaseline(ctx, p.arts[i], p.files[i], p.blobDir)
		if err != nil {
			return fmt.Errorf("baseline %s: %w", p.arts[i].Name, err)
		}
		p.addBlob(&blob{path: path, digest: steps[0].Blob, size: size, role: "baseline"})
		p.arts[i].Steps = steps
		p.plans[i].Method, p.plans[i].StoredBytes, p.plans[i].Blobs = "baseline", size, []string{steps[0].Blob}
		p.bySHA[p.arts[i].SHA256] = i
	}
	return nil
}

// addBlob records a blob in the recipe; the first artifact to add a digest names its role.
func (p *planner) addBlob(b *blob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.res.BlobPaths[b.digest]; ok {
		return
	}
	p.res.BlobPaths[b.digest] = b.path
	p.recipe.Blobs = append(p.recipe.Blobs, rehydrate.Blob{Digest: b.digest, Size: b.size, Role: b.role})
}

// SelfCheck rehydrates every artifact of res from its blobs and compares SHA-256. The artifacts
// share one engine, so what several of them read (the live ISO the PXE files are cut from) is
// rebuilt once.
func SelfCheck(ctx context.Context, res *Result, tmpDir string, jobs int, say func(string, ...any)) error {
	eng := rehydrate.NewEngine(res.Recipe, LocalBlobs(res.BlobPaths), tmpDir)
	defer eng.Close()
	all := make([]*rehydrate.Artifact, len(res.Recipe.Artifacts))
	for i := range res.Recipe.Artifacts {
		all[i] = &res.Recipe.Artifacts[i]
	}
	eng.Expect(all)
	return workpool.ForEach(ctx, len(res.Recipe.Artifacts), jobs, func(i int) error {
		a := res.Recipe.Artifacts[i]
		start := time.Now()
		if err := eng.Rehydrate(ctx, a.ID, io.Discard, nil); err != nil {
			return fmt.Errorf("self-check failed, refusing to build: %w", err)
		}
		say("verified %s (%.1fs)", a.Name, time.Since(start).Seconds())
		return nil
	})
}

// LocalBlobs serves blobs from files on disk.
type LocalBlobs map[string]string

// OpenBlob implements rehydrate.BlobSource.
func (l LocalBlobs) OpenBlob(_ context.Context, digest string) (io.ReadCloser, error) {
	p, ok := l[digest]
	if !ok {
		return nil, fmt.Errorf("blob %s not found", digest)
	}
	return os.Open(p)
}

// BlobPath implements rehydrate.BlobPather.
func (l LocalBlobs) BlobPath(digest string) (string, bool) {
	p, ok := l[digest]
	return p, ok
}

func sortedValues(m map[string]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	sort.Ints(out)
	return out
}

// openSized opens path for reading and returns it with its size.
func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

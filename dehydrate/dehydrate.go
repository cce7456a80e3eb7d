// Package dehydrate turns a release (stream.json and the files it lists) into a recipe and the
// blobs it needs: a baseline per architecture, deltas for the artifacts that are cheap to derive
// from it, and whole blobs for the rest. It proves every recipe by running it before it returns.
package dehydrate

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/internal/units"
	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/streammeta"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
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
	ID          string
	Name        string
	Size        int64  // uncompressed size
	Method      string // "baseline", "whole", "same-as <id>", "delta", "qcow2-decode+delta"
	StoredBytes int64  // bytes of blobs this artifact adds (before layer compression)
	PackedBytes int64  // the same, compressed: an estimate of what the image pays
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
	say := func(format string, args ...any) {
		if opt.Progress != nil {
			opt.Progress(fmt.Sprintf(format, args...))
		}
	}
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
	filesDir := filepath.Join(opt.WorkDir, "files")
	blobDir := filepath.Join(opt.WorkDir, "blobs")
	for _, d := range []string{filesDir, blobDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}

	// 1. Check and decompress every shipped file.
	files := make([]string, len(rel.Artifacts))
	err = parallel(ctx, opt.Jobs, len(rel.Artifacts), func(i int) error {
		a := rel.Artifacts[i]
		start := time.Now()
		out := filepath.Join(filesDir, a.Name)
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
		files[i] = out
		say("checked %s (%s, %.1fs)", a.ShippedName, units.Bytes(n), time.Since(start).Seconds())
		return nil
	})
	if err != nil {
		return nil, err
	}

	res := &Result{StreamJSON: raw, BlobPaths: map[string]string{}}
	recipe := &rehydrate.Recipe{SchemaVersion: rehydrate.SchemaVersion, Generator: opt.Generator}
	plans := make([]Plan, len(rel.Artifacts))
	arts := make([]rehydrate.Artifact, len(rel.Artifacts))
	var mu sync.Mutex
	addBlob := func(digest, path string, size int64, role string) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := res.BlobPaths[digest]; ok {
			return
		}
		res.BlobPaths[digest] = path
		recipe.Blobs = append(recipe.Blobs, rehydrate.Blob{Digest: digest, Size: size, Role: role})
	}

	// 2. Baselines, one per architecture; identical files share one blob.
	baselines := map[string]int{}
	for i, a := range rel.Artifacts {
		if a.Kind == streammeta.KindDisk && a.Platform == opt.Baseline && strings.HasPrefix(a.Format, "qcow2") {
			if isQcow2(files[i]) {
				baselines[a.Arch] = i
			}
		}
	}
	for _, arch := range rel.Arches() {
		if _, ok := baselines[arch]; !ok {
			say("warning: no %s qcow2 disk for %s: its artifacts are stored whole", opt.Baseline, arch)
		}
	}
	bySHA := map[string]int{}
	for i, a := range rel.Artifacts {
		arts[i] = rehydrate.Artifact{ID: a.ID(), Arch: a.Arch, Platform: a.Platform, Format: a.Format,
			Kind: a.Kind, Name: a.Name, Disk: a.DiskName(), SHA256: a.UncompressedSHA256}
		st, err := os.Stat(files[i])
		if err != nil {
			return nil, err
		}
		arts[i].Size = st.Size()
		plans[i] = Plan{ID: a.ID(), Name: a.Name, Size: st.Size()}
	}
	for _, i := range sortedValues(baselines) {
		steps, path, size, err := storeBaseline(ctx, arts[i], files[i], blobDir)
		if err != nil {
			return nil, fmt.Errorf("baseline %s: %w", arts[i].Name, err)
		}
		addBlob(steps[0].Blob, path, size, "baseline")
		arts[i].Steps = steps
		plans[i].Method, plans[i].StoredBytes = "baseline", size
		bySHA[arts[i].SHA256] = i
	}

	// 3. Every other artifact: the cheapest of the candidate recipes.
	var deltaTime time.Duration
	err = parallel(ctx, opt.Jobs, len(rel.Artifacts), func(i int) error {
		if arts[i].Steps != nil {
			return nil
		}
		mu.Lock()
		same, dup := bySHA[arts[i].SHA256]
		mu.Unlock()
		if dup {
			arts[i].Steps = []rehydrate.Step{{Op: rehydrate.OpRef, Ref: arts[same].ID}}
			plans[i].Method = "same-as " + arts[same].ID
			return nil
		}
		if a := rel.Artifacts[i]; a.IsPXE() {
			for j, other := range rel.Artifacts {
				if !other.IsISO() || other.Arch != a.Arch {
					continue
				}
				steps, ok, err := planFromISO(a, arts[i].Size, arts[j], files[j])
				if err != nil {
					return fmt.Errorf("%s: %w", arts[i].Name, err)
				}
				if ok {
					arts[i].Steps = steps
					plans[i].Method = "extract from " + arts[j].Name
					say("%s: %s", arts[i].Name, plans[i].Method)
					return nil
				}
			}
		}
		b, hasBase := baselines[arts[i].Arch]
		var best *candidate
		storeWhole := false
		if hasBase && arts[i].Kind == streammeta.KindDisk && !rel.Artifacts[i].IsISO() && !isQcow2(files[i]) {
			c, whole, note, err := formatCandidate(ctx, files[b], "sha256:"+arts[b].SHA256, files[i], arts[i].SHA256, blobDir, opt.Delta)
			if err != nil {
				return fmt.Errorf("%s: %w", arts[i].Name, err)
			}
			if note != "" {
				say("%s: %s", arts[i].Name, note)
			}
			if c != nil {
				mu.Lock()
				deltaTime += c.took
				mu.Unlock()
				plans[i].DeltaTime += c.took
			}
			best, storeWhole = c, whole
		}
		if hasBase && best == nil && !storeWhole && arts[i].Kind == streammeta.KindDisk && !rel.Artifacts[i].IsISO() {
			cands, err := deltaCandidates(ctx, files[b], files[i], blobDir, opt.Delta)
			if err != nil {
				return fmt.Errorf("%s: %w", arts[i].Name, err)
			}
			for _, c := range cands {
				mu.Lock()
				deltaTime += c.took
				mu.Unlock()
				plans[i].DeltaTime += c.took
				if c.better(best) {
					if best != nil && best.path != c.path {
						os.Remove(best.path)
					}
					best = c
				} else if c.path != best.path {
					os.Remove(c.path)
				}
			}
		}
		if hasBase && rel.Artifacts[i].IsISO() {
			start := time.Now()
			c, err := precompCandidate(ctx, files[b], files[i], blobDir, opt.Delta, say)
			if err != nil {
				return fmt.Errorf("%s: %w", arts[i].Name, err)
			}
			if c != nil {
				mu.Lock()
				deltaTime += c.took
				mu.Unlock()
				plans[i].DeltaTime += c.took
				say("%s: expanded and delta'd in %.1fs", arts[i].Name, time.Since(start).Seconds())
				best = c
			}
		}
		// A delta that is not much smaller than the file is not worth its rehydration cost.
		if best != nil && best.stored() < arts[i].Size/2 {
			addBlob(best.digest, best.path, best.size, "delta")
			for _, m := range best.more {
				addBlob(m.digest, m.path, m.size, "delta")
			}
			arts[i].Steps = best.steps(arts[b].Steps)
			plans[i].Method, plans[i].StoredBytes, plans[i].PackedBytes = best.method(), best.stored(), best.cost()
			say("%s: %s of %s (%.1fs)", arts[i].Name, best.method(), units.Bytes(best.stored()), best.took.Seconds())
			return nil
		}
		if best != nil {
			os.Remove(best.path)
			for _, m := range best.more {
				os.Remove(m.path)
			}
		}
		digest := "sha256:" + arts[i].SHA256
		addBlob(digest, files[i], arts[i].Size, "whole")
		arts[i].Steps = []rehydrate.Step{{Op: rehydrate.OpBlob, Blob: digest}}
		plans[i].Method, plans[i].StoredBytes = "whole", arts[i].Size
		say("%s: stored whole (%s)", arts[i].Name, units.Bytes(arts[i].Size))
		return nil
	})
	if err != nil {
		return nil, err
	}
	recipe.Artifacts = arts
	sort.Slice(recipe.Blobs, func(i, j int) bool { return recipe.Blobs[i].Digest < recipe.Blobs[j].Digest })
	recipe.DeclareFeatures()
	if err := recipe.Validate(); err != nil {
		return nil, fmt.Errorf("dehydrate: produced an invalid recipe: %w", err)
	}
	res.Recipe, res.Plans, res.DeltaTime = recipe, plans, deltaTime

	// 4. Never publish what cannot reproduce itself.
	if err := SelfCheck(ctx, res, opt.WorkDir, opt.Jobs, say); err != nil {
		return nil, err
	}
	return res, nil
}

// SelfCheck rehydrates every artifact of res from its blobs and compares SHA-256. The artifacts
// share one engine, so what several of them read (the live ISO the PXE files are cut from) is
// rebuilt once.
func SelfCheck(ctx context.Context, res *Result, tmpDir string, jobs int, say func(string, ...any)) error {
	eng := rehydrate.NewEngine(res.Recipe, LocalBlobs(res.BlobPaths), tmpDir)
	defer eng.Close()
	return parallel(ctx, jobs, len(res.Recipe.Artifacts), func(i int) error {
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

type candidate struct {
	path, digest string
	size         int64 // bytes of the delta
	packed       int64 // bytes of the delta compressed (an estimate of its layer's size)
	decoded      bool  // the delta applies to the baseline's guest view, not its file
	// layout, when set, re-encodes the patched guest view as a qcow2 file laid out like this
	// (the target's own layout, read from it): the delta then covers only guest data.
	layout json.RawMessage
	// restore: the delta makes a precomp expanded stream, whose zstd frames are compressed
	// again (zstd-restore) to give the target.
	restore bool
	took    time.Duration
	// format, when set, names the disk format steps in tail (formats.go) that follow the
	// delta; more holds the deltas tail applies, params the bytes of its parameters.
	format string
	tail   []rehydrate.Step
	more   []*candidate
	params int64
}

func (c *candidate) method() string {
	switch {
	case c.restore:
		return "qcow2-decode+delta+zstd-restore"
	case c.format != "":
		m := "qcow2-decode+delta+" + c.format
		if len(c.more) > 0 {
			m += "+delta"
		}
		return m
	case c.layout != nil:
		return "qcow2-decode+delta+qcow2-encode"
	case c.decoded:
		return "qcow2-decode+delta"
	}
	return "delta"
}

// cost is what the candidate adds to the image: its delta as the layer compression will store
// it (a literal run of zeros costs almost nothing there), and its layout in the recipe.
func (c *candidate) cost() int64 {
	n := c.packed + int64(len(c.layout)) + c.params
	for _, m := range c.more {
		n += m.packed
	}
	return n
}

// stored is the bytes the candidate adds before compression: its deltas and parameters.
func (c *candidate) stored() int64 {
	n := c.size + int64(len(c.layout)) + c.params
	for _, m := range c.more {
		n += m.size
	}
	return n
}

// reencodeAbove is the compressed size a plain file delta must exceed before the qcow2
// re-encode route may replace it; forceReencode lets tests exercise that route on small images.
var (
	reencodeAbove int64 = 16 << 10
	forceReencode       = false
)

// better says whether c should replace best. A plain file delta streams straight out of the
// baseline's layer; the qcow2 re-encode route needs the baseline decoded (random access, so a
// spool when read from a registry), so it must save real space to be chosen.
func (c *candidate) better(best *candidate) bool {
	if best == nil {
		return true
	}
	if (c.layout != nil) != (best.layout != nil) {
		plain, enc := best, c
		if c.layout == nil {
			plain, enc = c, best
		}
		encWins := forceReencode || (plain.cost() > reencodeAbove && enc.cost()*2 < plain.cost())
		return encWins == (c == enc)
	}
	return c.cost() < best.cost()
}

// steps returns the recipe steps that rebuild the target from the baseline, whose own steps
// (its blob, and the decoding of how it is stored) come first.
func (c *candidate) steps(baseline []rehydrate.Step) []rehydrate.Step {
	steps := append([]rehydrate.Step(nil), baseline...)
	if c.decoded {
		steps = append(steps, rehydrate.Step{Op: rehydrate.OpQcow2Decode})
	}
	steps = append(steps, rehydrate.Step{Op: rehydrate.OpPatch, Blob: c.digest})
	if c.layout != nil {
		steps = append(steps, rehydrate.Step{Op: rehydrate.OpQcow2Encode, Params: c.layout})
	}
	if c.restore {
		steps = append(steps, rehydrate.Step{Op: rehydrate.OpZstdRestore})
	}
	return append(steps, c.tail...)
}

// deltaCandidates computes the deltas worth trying from the baseline qcow2 to target: for a
// qcow2 target, against the qcow2 file itself and, guest view to guest view, re-encoded with the
// target's layout; for any other disk, against the baseline's guest (raw) view.
func deltaCandidates(ctx context.Context, basePath, targetPath, blobDir string, opt delta.Options) ([]*candidate, error) {
	base, bsize, err := openSized(basePath)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	target, tsize, err := openSized(targetPath)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	var out []*candidate
	try := func(ra io.ReaderAt, size int64, decoded bool, tra io.ReaderAt, tsize int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		c, err := writeDelta(ra, size, tra, tsize, blobDir, opt)
		if err != nil {
			return err
		}
		c.decoded = decoded
		out = append(out, c)
		return nil
	}
	img, err := qcow2.Open(base, bsize)
	if err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if !isQcow2(targetPath) {
		return out, try(img, img.Size(), true, target, tsize)
	}
	if err := try(base, bsize, false, target, tsize); err != nil {
		return nil, err
	}
	if out[0].cost() <= reencodeAbove && !forceReencode {
		return out, nil // the re-encode route could not be chosen (see better): do not compute it
	}
	// The guest-to-guest route, when the target's layout can be reproduced by qcow2.Encode.
	timg, err := qcow2.Open(target, tsize)
	if err != nil {
		return out, nil
	}
	layout, err := timg.Layout()
	if err != nil {
		return out, nil
	}
	lj, err := json.Marshal(layout)
	if err != nil {
		return nil, err
	}
	if err := try(img, img.Size(), true, timg, timg.Size()); err != nil {
		return nil, err
	}
	out[len(out)-1].layout = lj
	return out, nil
}

// writeDelta computes the delta from base to target with both engines — the searching one,
// which follows moved content, and the aligned one, whose result is bounded by the bytes that
// differ in place — and keeps the smaller.
func writeDelta(base io.ReaderAt, baseSize int64, target io.ReaderAt, targetSize int64, blobDir string, opt delta.Options) (*candidate, error) {
	start := time.Now()
	var best *candidate
	engines := []func(w io.Writer) error{
		func(w io.Writer) error {
			_, err := delta.Compute(base, baseSize, target, targetSize, w, opt)
			return err
		},
		func(w io.Writer) error {
			_, err := delta.ComputeAligned(base, baseSize, target, targetSize, w)
			return err
		},
	}
	for i, compute := range engines {
		if i > 0 && best.size <= skipSecondBelow {
			break // the first engine's delta is already tiny: the other cannot matter
		}
		c, err := writeBlob(blobDir, compute)
		if err != nil {
			return nil, fmt.Errorf("delta: %w", err)
		}
		if best == nil || c.size < best.size {
			if best != nil && best.path != c.path {
				os.Remove(best.path)
			}
			best = c
		} else if c.path != best.path {
			os.Remove(c.path)
		}
	}
	best.took = time.Since(start)
	packed, err := compressedSize(best.path)
	if err != nil {
		return nil, err
	}
	best.packed = packed
	return best, nil
}

// skipSecondBelow is the delta size under which the second engine is not run.
const skipSecondBelow = 64 << 10

// writeBlob stores what write produces as a blob named by its SHA-256.
func writeBlob(blobDir string, write func(io.Writer) error) (*candidate, error) {
	f, err := os.CreateTemp(blobDir, ".delta-*")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	hexd := hex.EncodeToString(h.Sum(nil))
	path := filepath.Join(blobDir, hexd)
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return &candidate{path: path, digest: "sha256:" + hexd, size: st.Size()}, nil
}

// compressedSize estimates what a blob costs in a compressed layer.
func compressedSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n countingWriter
	zw, err := zstd.NewWriter(&n, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(zw, f); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return int64(n), nil
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

func isQcow2(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && string(magic[:]) == "QFI\xfb"
}

// parallel runs fn(0..n-1) on up to jobs goroutines and returns the first error.
func parallel(ctx context.Context, jobs, n int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idx := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := 0; w < min(jobs, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := fn(i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		select {
		case idx <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(idx)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
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

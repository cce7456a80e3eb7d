package dehydrate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// The routes of plan.go's table, one function each.

// reuse: an artifact identical to a baseline is a ref to it and costs nothing.
func reuse(_ context.Context, j *job, _ *candidate) (*candidate, error) {
	same, ok := j.bySHA[j.art.SHA256]
	if !ok {
		return nil, nil
	}
	return &candidate{steps: []rehydrate.Step{{Op: rehydrate.OpRef, Ref: j.arts[same].ID}}, final: true}, nil
}

// cutFromISO: a PXE file that sits, byte for byte, inside its architecture's live ISO is cut
// out of the rehydrated ISO and costs nothing.
func cutFromISO(_ context.Context, j *job, _ *candidate) (*candidate, error) {
	if !j.a.IsPXE() {
		return nil, nil
	}
	for k, other := range j.rel.Artifacts {
		if !other.IsISO() || other.Arch != j.a.Arch {
			continue
		}
		steps, ok, err := planFromISO(j.a, j.art.Size, j.arts[k].ID, j.files[k])
		if err != nil {
			return nil, err
		}
		if ok {
			return &candidate{steps: steps, final: true}, nil
		}
	}
	return nil, nil
}

// formatSteps: a disk in a format with recipe steps (internal/diskview's table; the candidate
// is made in formats.go). Once its format is recognised, no plain delta of its compressed
// bytes is worth computing: the candidate (or the whole file, when the format cannot be
// re-encoded) is final.
func formatSteps(ctx context.Context, j *job, _ *candidate) (*candidate, error) {
	if !j.hasBase() || !j.isDisk() || isQcow2(j.file) {
		return nil, nil
	}
	c, whole, note, err := formatCandidate(ctx, j.files[j.base], "sha256:"+j.arts[j.base].SHA256, j.file, j.art.SHA256, j.blobDir, j.opt.Delta)
	if err != nil {
		return nil, err
	}
	if note != "" {
		j.say("%s: %s", j.art.Name, note)
	}
	if whole {
		return j.whole(), nil
	}
	if c != nil {
		c.final = true
	}
	return c, nil
}

// fileDelta: a qcow2 as a delta of the baseline's qcow2 file.
func fileDelta(ctx context.Context, j *job, _ *candidate) (*candidate, error) {
	if !j.hasBase() || !j.isDisk() || !isQcow2(j.file) {
		return nil, nil
	}
	base, err := openBaseline(j.files[j.base])
	if err != nil {
		return nil, err
	}
	defer base.Close()
	target, tsize, err := openSized(j.file)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	return deltaCandidate(ctx, j, base.f, base.size, target, tsize, nil)
}

// reencode: a qcow2 as a delta of the guest views, written again by qcow2-encode with the
// target's own layout, so that the delta covers only guest data. Computed only when it could
// be chosen (see better) and the layout can be reproduced.
func reencode(ctx context.Context, j *job, best *candidate) (*candidate, error) {
	if !j.hasBase() || !j.isDisk() || !isQcow2(j.file) || best == nil || (best.cost() <= reencodeAbove && !forceReencode) {
		return nil, nil
	}
	target, tsize, err := openSized(j.file)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	timg, err := qcow2.Open(target, tsize)
	if err != nil {
		return nil, nil
	}
	layout, err := timg.Layout()
	if err != nil {
		return nil, nil
	}
	lj, err := json.Marshal(layout)
	if err != nil {
		return nil, err
	}
	base, err := openBaseline(j.files[j.base])
	if err != nil {
		return nil, err
	}
	defer base.Close()
	return deltaCandidate(ctx, j, base.guest, base.guest.Size(), timg, timg.Size(), decoded, rehydrate.Step{Op: rehydrate.OpQcow2Encode, Params: lj})
}

// guestDelta: any other disk (raw) as a delta against the baseline's guest view.
func guestDelta(ctx context.Context, j *job, _ *candidate) (*candidate, error) {
	if !j.hasBase() || !j.isDisk() || isQcow2(j.file) {
		return nil, nil
	}
	base, err := openBaseline(j.files[j.base])
	if err != nil {
		return nil, err
	}
	defer base.Close()
	target, tsize, err := openSized(j.file)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	return deltaCandidate(ctx, j, base.guest, base.guest.Size(), target, tsize, decoded)
}

// precompISO: the live ISO, whose bulk is zstd frames this build reproduces (precomp.go).
func precompISO(ctx context.Context, j *job, _ *candidate) (*candidate, error) {
	if !j.hasBase() || !j.a.IsISO() {
		return nil, nil
	}
	start := time.Now()
	c, err := precompCandidate(ctx, j.files[j.base], j.file, j.blobDir, j.opt.Delta, j.say)
	if c != nil {
		j.say("%s: expanded and delta'd in %.1fs", j.art.Name, time.Since(start).Seconds())
	}
	return c, err
}

// baseline is an open baseline qcow2 file and its guest view.
type baseline struct {
	f     *os.File
	size  int64
	guest *qcow2.Image
}

func openBaseline(path string) (*baseline, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	img, err := qcow2.Open(f, size)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("baseline: %w", err)
	}
	return &baseline{f, size, img}, nil
}

func (b *baseline) Close() error { return b.f.Close() }

// decoded is the step before a delta against the baseline's guest view.
var decoded = []rehydrate.Step{{Op: rehydrate.OpQcow2Decode}}

// deltaCandidate computes the delta from base to target: the candidate before -> patch ->
// after, which starts from the baseline's output.
func deltaCandidate(ctx context.Context, j *job, base io.ReaderAt, bsize int64, target io.ReaderAt, tsize int64, before []rehydrate.Step, after ...rehydrate.Step) (*candidate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	d, err := writeDelta(base, bsize, target, tsize, j.blobDir, j.opt.Delta)
	if err != nil {
		return nil, err
	}
	steps := append(append(slices.Clone(before), rehydrate.Step{Op: rehydrate.OpPatch, Blob: d.digest}), after...)
	return &candidate{steps: steps, onBaseline: true, blobs: []*blob{d}, took: time.Since(start)}, nil
}

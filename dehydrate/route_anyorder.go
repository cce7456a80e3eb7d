package dehydrate

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// movedAbove is the compressed cost a raw disk's best candidate must exceed before the
// any-order route is computed: disks that differ from the baseline in place (metal, the raw
// clouds) already cost a few hundred bytes, and need not pay a third delta at build time.
var movedAbove int64 = 64 << 10

// movedData: a raw disk whose data sits elsewhere than in the baseline, as metal4k's does (its
// own partitioning and mkfs on 4096-byte sectors, the files copied again in another order), as
// an any-order delta against the baseline's guest view. The forward-only delta loses every file
// that moved backward; this one copies from wherever the file is. The steps are the plain
// route's (qcow2-decode -> patch): qcow2-decode gives random access, and patch applies a delta
// to such an input with delta.PatchAt, so nothing more is read or held than for the plain route.
func movedData(ctx context.Context, j *job, best *candidate) (*candidate, error) {
	if !j.hasBase() || !j.isDisk() || isQcow2(j.file) || (best != nil && best.cost() <= movedAbove) {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
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
	opt := j.opt.Delta
	opt.AnyOrder = true
	start := time.Now()
	// The searching engine only: the aligned one's delta is the plain route's, already offered.
	d, err := writeBlob(j.blobDir, func(w io.Writer) error {
		_, err := delta.Compute(base.guest, base.guest.Size(), target, tsize, w, opt)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	if d.packed, err = compressedSize(d.path); err != nil {
		return nil, err
	}
	d.role = "delta"
	steps := []rehydrate.Step{{Op: rehydrate.OpQcow2Decode}, {Op: rehydrate.OpPatch, Blob: d.digest}}
	return &candidate{steps: steps, onBaseline: true, blobs: []*blob{d}, took: time.Since(start)}, nil
}

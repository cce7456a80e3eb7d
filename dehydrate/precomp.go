package dehydrate

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/precomp"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// precompMinCover is the share of a file its reproducible zstd frames must hold before the
// expanded route is tried: below it the frames cannot make the delta much smaller.
const precompMinCover = 4 // 1/4

// precompCandidate tries the route for files whose bulk is zstd frames this build reproduces,
// such as the live ISO's squashfs of the same root tree as the baseline disk: expand the frames
// (precomp), compute a delta from the baseline's guest view to the expanded file — in any
// order, since the squashfs lays the files out anew — and compress them again when rehydrating
// (zstd-restore). It returns nil when the file holds too few such frames.
func precompCandidate(ctx context.Context, basePath, targetPath, blobDir string, opt delta.Options, say func(string, ...any)) (*candidate, error) {
	target, tsize, err := openSized(targetPath)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	plan, err := precomp.Scan(target, tsize)
	if err != nil {
		return nil, err
	}
	if plan.Covered()*precompMinCover < tsize {
		if precomp.Version() == "" {
			say("%s: built without cgo, so its zstd frames cannot be reproduced: stored as it is", targetPath)
		}
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	say("%s: %d zstd frames (level %d, libzstd %s) hold %d of %d bytes: expanding them", targetPath,
		len(plan.Frames), plan.Level, precomp.Version(), plan.Covered(), tsize)
	x, err := os.CreateTemp(blobDir, ".expanded-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(x.Name())
	defer x.Close()
	bw := bufio.NewWriterSize(x, 1<<20)
	if err := precomp.Expand(bw, target, tsize, plan); err != nil {
		return nil, fmt.Errorf("expand: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	xsize := plan.ExpandedSize(tsize)

	base, err := openBaseline(basePath)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	opt.AnyOrder = true
	start := time.Now()
	d, err := writeDelta(base.guest, base.guest.Size(), x, xsize, blobDir, opt)
	if err != nil {
		return nil, err
	}
	steps := []rehydrate.Step{{Op: rehydrate.OpQcow2Decode}, {Op: rehydrate.OpPatch, Blob: d.digest}, {Op: rehydrate.OpZstdRestore}}
	return &candidate{steps: steps, onBaseline: true, blobs: []*blob{d}, took: time.Since(start)}, nil
}

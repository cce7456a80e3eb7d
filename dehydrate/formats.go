package dehydrate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/internal/diskview"
	"github.com/rehydrator/rehydrator/internal/sparsefile"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/sparsetar"
	"github.com/rehydrator/rehydrator/vmdk"
)

// formatCandidate plans target as baseline guest view -> patch -> the steps of its format
// (internal/diskview's table), with a last patch for whatever bytes the format steps do not
// reproduce. It returns nil when no format with steps claims target; whole is set when one does
// but this file or build cannot take its steps (note says why), so that no plain delta of its
// compressed bytes is worth computing either.
func formatCandidate(ctx context.Context, basePath, baseDigest, targetPath, targetSHA, blobDir string, opt delta.Options) (c *candidate, whole bool, note string, err error) {
	target, tsize, err := openSized(targetPath)
	if err != nil {
		return nil, false, "", err
	}
	defer target.Close()
	f := diskview.Sniff(target, tsize)
	if f == nil {
		return nil, false, "", nil
	}
	v, err := f.Open(target, tsize)
	if err != nil {
		// The shipped file is what stream.json promises, but it contradicts its format.
		return nil, true, fmt.Sprintf("cannot open it as %s: %v", f.Name, err), nil
	}
	if v.Steps == nil {
		return nil, false, "", nil
	}
	fsteps, err := v.Steps()
	if errors.Is(err, diskview.ErrNoEncoder) {
		return nil, true, err.Error(), nil
	}
	if err != nil {
		return nil, false, "", err
	}
	base, err := openBaseline(basePath)
	if err != nil {
		return nil, false, "", err
	}
	defer base.Close()
	start := time.Now()
	gd, err := writeDelta(base.guest, base.guest.Size(), v, v.Size, blobDir, opt)
	if errors.Is(err, vmdk.ErrCorrupt) || errors.Is(err, sparsetar.ErrCorrupt) {
		// The shipped file is what stream.json promises, but its insides contradict
		// themselves: keep it as it is.
		return nil, true, fmt.Sprintf("cannot read its %s guest view: %v", f.Name, err), nil
	}
	if err != nil {
		return nil, false, "", fmt.Errorf("%s guest view: %w", f.Name, err)
	}
	fsteps, gb, gnote, err := vmdkGrains(fsteps, target, tsize, blobDir)
	if err != nil {
		return nil, false, "", fmt.Errorf("%s: %w", f.Name, err)
	}
	steps := append([]rehydrate.Step{{Op: rehydrate.OpQcow2Decode}, {Op: rehydrate.OpPatch, Blob: gd.digest}}, fsteps...)
	c = &candidate{steps: steps, onBaseline: true, blobs: []*blob{gd}, took: time.Since(start)}
	if gb != nil {
		c.blobs = append(c.blobs, gb)
	}
	left, note, err := leftover(ctx, c, base.f, baseDigest, target, tsize, targetSHA, blobDir, opt)
	if errors.Is(err, errStepsFailed) {
		os.Remove(gd.path)
		return nil, true, fmt.Sprintf("the %s %v", f.Name, err), nil
	}
	if err != nil {
		return nil, false, "", fmt.Errorf("%s %w", f.Name, err)
	}
	if left != nil {
		c.blobs = append(c.blobs, left)
		c.steps = append(c.steps, rehydrate.Step{Op: rehydrate.OpPatch, Blob: left.digest})
		note = fmt.Sprintf("%s of %s differ after re-encoding: a last delta of %d bytes carries them", note, f.Name, left.size)
	}
	if gnote != "" {
		note = strings.TrimPrefix(note+"; "+gnote, "; ")
	}
	return c, false, note, nil
}

// errStepsFailed marks format steps that fail on the file they were read from.
var errStepsFailed = errors.New("steps failed")

// leftover runs c's steps on the baseline file: nil when they make the target (usually), else
// the delta from what they make to it, with a note of how many bytes differ.
func leftover(ctx context.Context, c *candidate, base *os.File, baseDigest string, target *os.File, tsize int64, targetSHA, blobDir string, opt delta.Options) (*blob, string, error) {
	// Hash it first; only where it differs is it written out.
	steps := append([]rehydrate.Step{{Op: rehydrate.OpBlob, Blob: baseDigest}}, c.steps...)
	blobs := LocalBlobs{baseDigest: base.Name()}
	for _, b := range c.blobs {
		blobs[b.digest] = b.path
	}
	h := sha256.New()
	if _, err := rehydrate.Run(ctx, blobs, nil, steps, h); err != nil {
		return nil, "", fmt.Errorf("%w: %w", errStepsFailed, err)
	}
	if hex.EncodeToString(h.Sum(nil)) == targetSHA {
		return nil, "", nil
	}
	tmp, err := os.CreateTemp(blobDir, ".candidate-*")
	if err != nil {
		return nil, "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	sw := sparsefile.NewWriter(tmp)
	bw := bufio.NewWriterSize(sw, 1<<20)
	if _, err = rehydrate.Run(ctx, blobs, nil, steps, bw); err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = sw.Finish()
	}
	if err != nil {
		return nil, "", fmt.Errorf("steps: %w", err)
	}
	left, err := writeDelta(tmp, sw.Size(), target, tsize, blobDir, opt)
	if err != nil {
		return nil, "", fmt.Errorf("leftover: %w", err)
	}
	return left, fmt.Sprintf("%d bytes", countDiff(tmp, target)), nil
}

// countDiff counts the bytes that differ between two files (for the build's messages).
func countDiff(a, b io.ReaderAt) int64 {
	ra, rb := bufio.NewReaderSize(io.NewSectionReader(a, 0, 1<<62), 1<<20), bufio.NewReaderSize(io.NewSectionReader(b, 0, 1<<62), 1<<20)
	x, y := make([]byte, 1<<16), make([]byte, 1<<16)
	var diff int64
	for {
		n, errA := io.ReadFull(ra, x)
		m, errB := io.ReadFull(rb, y)
		k := min(n, m)
		if !bytes.Equal(x[:k], y[:k]) {
			for i := range k {
				if x[i] != y[i] {
					diff++
				}
			}
		}
		diff += int64(max(n, m) - k)
		if errA != nil || errB != nil {
			if errA == nil || errB == nil {
				// one continues: count its rest
				rest := ra
				if errA != nil {
					rest = rb
				}
				k, _ := io.Copy(io.Discard, rest)
				diff += k
			}
			return diff
		}
	}
}

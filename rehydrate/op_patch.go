package rehydrate

import (
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/delta"
)

// OpPatch applies a librsync-format delta (the blob Step.Blob) to its input.
const OpPatch = "patch"

func init() {
	register(opSpec[blobParams]{
		name:   OpPatch,
		params: blobOf,
		str:    blobString,
		blobs:  blobParams.list,
		apply:  applyPatch,
	})
}

func applyPatch(c *call, p blobParams, in *value) (*value, error) {
	d, err := c.blob(p.Digest)
	if err != nil {
		return nil, fmt.Errorf("delta: %w", err)
	}
	pr, pw := io.Pipe()
	go func() {
		var err error
		if in.ra != nil && in.size >= 0 {
			err = delta.PatchAt(in.ra, in.size, d.stream(), pw)
		} else {
			err = delta.Patch(in.r, d.stream(), pw)
		}
		d.close()
		in.close()
		if err != nil {
			err = fmt.Errorf("patch with delta %s: %w", ShortDigest(p.Digest), err)
		}
		pw.CloseWithError(err)
	}()
	return &value{key: in.key + "|patch:" + p.Digest, r: pr, size: -1}, nil
}

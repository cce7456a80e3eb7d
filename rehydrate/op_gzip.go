package rehydrate

import (
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/reflate"
)

// OpGzip writes its input (the plain data) as the exact gzip file it was split from: member
// headers and trailers verbatim, each deflate stream rebuilt by reflate from the plain data
// and the reconstruction blob (Step.Blob, made by GzipSplit). The gcp .tar.gz and the kubevirt
// layer are gzip files that must come out as shipped.
const OpGzip = "gzip"

// maxGzipBlob bounds the reconstruction blob read into memory: reflate's data for a
// well-predicted stream is a small fraction of it, so this covers files of many GiB.
const maxGzipBlob = 1 << 30

func init() {
	register(opSpec[blobParams]{
		name:   OpGzip,
		params: blobOf,
		str:    blobString,
		blobs:  blobParams.list,
		apply: func(c *call, p blobParams, in *value) (*value, error) {
			blob, err := readReconBlob(c, p.Digest)
			if err != nil {
				return nil, err
			}
			size, err := reflate.WrappedSize(blob)
			if err != nil {
				return nil, fmt.Errorf("gzip reconstruction blob %s: %w", ShortDigest(p.Digest), err)
			}
			return pipe(in, in.key+"|"+OpGzip+":"+p.Digest, size, func(w io.Writer, r io.Reader) error {
				if err := GzipRebuild(w, r, blob); err != nil {
					return fmt.Errorf("gzip: %w", err)
				}
				return nil
			}), nil
		},
	})
}

// readReconBlob reads reflate's reconstruction data (gzip and zip steps) into memory.
func readReconBlob(c *call, digest string) ([]byte, error) {
	v, err := c.blob(digest)
	if err != nil {
		return nil, fmt.Errorf("deflate reconstruction: %w", err)
	}
	defer v.close()
	b, err := io.ReadAll(io.LimitReader(v.stream(), maxGzipBlob+1))
	if err != nil {
		return nil, fmt.Errorf("deflate reconstruction blob %s: %w", ShortDigest(digest), err)
	}
	if len(b) > maxGzipBlob {
		return nil, fmt.Errorf("deflate reconstruction blob %s is over %d bytes", ShortDigest(digest), maxGzipBlob)
	}
	return b, nil
}

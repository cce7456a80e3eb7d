package rehydrate

import (
	"errors"
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/filemap"
)

// OpFilemap turns its input (a baseline's guest view) into the synthetic base that the map
// blob (Step.Blob, a filemap.Map) describes: the base's file data laid out where the target
// has the same files, then the whole base. The patch step after it reads it at random.
const OpFilemap = "filemap"

// maxMapBlob bounds the map read into memory: about 6 bytes a file, so 64 MiB is millions of
// files beyond any live root tree.
const maxMapBlob = 64 << 20

func init() {
	register(opSpec[blobParams]{
		name:         OpFilemap,
		randomAccess: true,
		params:       blobOf,
		str:          blobString,
		blobs:        blobParams.list,
		apply:        applyFilemap,
	})
}

func applyFilemap(c *call, p blobParams, in *value) (*value, error) {
	b, err := c.blob(p.Digest)
	if err != nil {
		return nil, fmt.Errorf("map: %w", err)
	}
	enc, err := io.ReadAll(io.LimitReader(b.stream(), maxMapBlob+1))
	b.close()
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", ShortDigest(p.Digest), err)
	}
	if len(enc) > maxMapBlob {
		return nil, fmt.Errorf("map %s is over %d MiB: not a map this rehydrator reads (check the recipe's blob)", ShortDigest(p.Digest), maxMapBlob>>20)
	}
	var m filemap.Map
	if err := m.UnmarshalBinary(enc); err != nil {
		if errors.Is(err, filemap.ErrFormat) {
			err = fmt.Errorf("%v (the blob is damaged or not a map: fetch the image again)", err)
		}
		return nil, fmt.Errorf("map %s: %w", ShortDigest(p.Digest), err)
	}
	if in.size >= 0 && m.Tail > in.size {
		return nil, fmt.Errorf("map %s appends %d base bytes, but the base has %d: the recipe pairs it with another baseline", ShortDigest(p.Digest), m.Tail, in.size)
	}
	// The map and its input are the key: a second artifact with the same pair could share a
	// spool of it, though none needs one (patch reads it at random).
	return &value{key: in.key + "|" + OpFilemap + ":" + p.Digest, ra: filemap.NewReader(in.ra, &m), size: m.Total()}, nil
}

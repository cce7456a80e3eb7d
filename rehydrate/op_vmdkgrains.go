package rehydrate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/rehydrator/rehydrator/reflate"
	"github.com/rehydrator/rehydrator/vmdk"
)

// OpVMDKGrains is vmdk-encode for an image whose grains C zlib does not all reproduce (qemu-img
// linked with zlib-ng, as Fedora's): the grains listed in the blob (Step.Blob, a VMDKGrains
// blob) are rebuilt by reflate from their guest bytes and their reconstruction data, the
// others compressed by zlib as vmdk-encode does. Params: vmdk.Params, as vmdk-encode's.
const OpVMDKGrains = "vmdk-grains"

// VMDKGrains blob, version 1 (integers are unsigned LEB128 varints):
//
//	"VGR" 1         magic and version
//	count           number of grains
//	per grain       grain number minus the previous one's plus one (the first: the number
//	                itself), so numbers strictly ascend; the length of its reconstruction
//	                data, then that data (reflate.SplitZlib's, of the grain's zlib stream)
const (
	vgrMagic   = "VGR"
	vgrVersion = 1
)

// errVGR is wrapped by every error about a damaged VMDKGrains blob.
var errVGR = errors.New("vmdk grains blob is damaged")

// MarshalVMDKGrains encodes the reconstruction data of grains (grain number -> reflate data).
func MarshalVMDKGrains(grains map[uint64][]byte) []byte {
	idx := make([]uint64, 0, len(grains))
	for g := range grains {
		idx = append(idx, g)
	}
	slices.Sort(idx)
	b := append([]byte(vgrMagic), vgrVersion)
	b = binary.AppendUvarint(b, uint64(len(idx)))
	next := uint64(0)
	for _, g := range idx {
		b = binary.AppendUvarint(b, g-next)
		b = binary.AppendUvarint(b, uint64(len(grains[g])))
		b = append(b, grains[g]...)
		next = g + 1
	}
	return b
}

// ParseVMDKGrains decodes a VMDKGrains blob. The slices point into b.
func ParseVMDKGrains(b []byte) (map[uint64][]byte, error) {
	if !bytes.HasPrefix(b, []byte(vgrMagic)) || len(b) < len(vgrMagic)+1 {
		return nil, fmt.Errorf("%w: no %q magic (not made by dehydrate's vmdk-grains route)", errVGR, vgrMagic)
	}
	if v := b[len(vgrMagic)]; v != vgrVersion {
		return nil, fmt.Errorf("%w: version %d, this rehydrator reads %d (use a newer rehydrator)", errVGR, v, vgrVersion)
	}
	b = b[len(vgrMagic)+1:]
	uv := func(what string) (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 || n != len(binary.AppendUvarint(nil, v)) { // one encoding per blob
			return 0, fmt.Errorf("%w: bad %s", errVGR, what)
		}
		b = b[n:]
		return v, nil
	}
	count, err := uv("grain count")
	if err != nil {
		return nil, err
	}
	if count > uint64(len(b))/2 { // each grain takes at least two bytes
		return nil, fmt.Errorf("%w: %d grains in %d bytes", errVGR, count, len(b))
	}
	out := make(map[uint64][]byte, count)
	next := uint64(0)
	for i := range count {
		d, err := uv("grain number")
		if err != nil {
			return nil, err
		}
		g := next + d
		if g < next || g == 1<<64-1 {
			return nil, fmt.Errorf("%w: grain number overflows", errVGR)
		}
		n, err := uv("reconstruction length")
		if err != nil {
			return nil, err
		}
		if n > uint64(len(b)) {
			return nil, fmt.Errorf("%w: grain %d (entry %d) claims %d bytes, %d left", errVGR, g, i, n, len(b))
		}
		out[g], b = b[:n:n], b[n:]
		next = g + 1
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last grain", errVGR, len(b))
	}
	return out, nil
}

// vmdkGrainsParams are vmdk-encode's Params plus the blob of grain reconstruction data.
type vmdkGrainsParams struct {
	*vmdk.Params
	Digest string
}

func (p vmdkGrainsParams) Validate() error {
	if err := (blobParams{p.Digest}).Validate(); err != nil {
		return err
	}
	return p.Params.Validate()
}

func init() {
	vp := fromJSON[vmdk.Params](true)
	register(opSpec[vmdkGrainsParams]{
		name: OpVMDKGrains,
		params: func(s *Step) (vmdkGrainsParams, error) {
			p, err := vp(s)
			return vmdkGrainsParams{p, s.Blob}, err
		},
		str:   blobString,
		blobs: func(p vmdkGrainsParams) []string { return []string{p.Digest} },
		apply: func(c *call, p vmdkGrainsParams, in *value) (*value, error) {
			if err := vmdkCanEncode(); err != nil {
				return nil, fmt.Errorf("%w (this rehydrator was built with CGO_ENABLED=0; use a cgo build, like the image's own binary)", err)
			}
			blob, err := readReconBlob(c, p.Digest)
			if err != nil {
				return nil, err
			}
			grains, err := ParseVMDKGrains(blob)
			if err != nil {
				return nil, fmt.Errorf("blob %s: %w", ShortDigest(p.Digest), err)
			}
			opt := vmdk.EncodeOptions{Grain: func(g uint64, data, dst []byte) (int, bool, error) {
				rec, ok := grains[g]
				if !ok {
					return 0, false, nil
				}
				w, r := &sliceWriter{b: dst}, bytes.NewReader(data)
				err := reflate.RebuildGzip(w, r, rec)
				if err == nil && r.Len() != 0 {
					err = fmt.Errorf("the guest holds %d bytes more than its reconstruction data", r.Len())
				}
				if err != nil {
					return 0, false, fmt.Errorf("vmdk grain %d from blob %s: %w", g, ShortDigest(p.Digest), err)
				}
				return w.n, true, nil
			}}
			return pipe(in, in.key+"|"+OpVMDKGrains+":"+p.Digest, p.FileSize, func(w io.Writer, r io.Reader) error {
				err := vmdk.EncodeWith(w, r, p.Params, opt)
				if _, ok := err.(*vmdk.MismatchError); ok {
					err = nil // as vmdk-encode: a patch that follows fixes those grains
				}
				return err
			}), nil
		},
	})
}

// sliceWriter writes into a fixed buffer (a grain's slot) and fails when it is full.
type sliceWriter struct {
	b []byte
	n int
}

func (w *sliceWriter) Write(p []byte) (int, error) {
	if len(p) > len(w.b)-w.n {
		return 0, errors.New("rebuilt grain is larger than its slot")
	}
	w.n += copy(w.b[w.n:], p)
	return len(p), nil
}

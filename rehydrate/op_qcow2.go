package rehydrate

import (
	"io"

	"github.com/rehydrator/rehydrator/qcow2"
)

const (
	// OpQcow2Decode reads a qcow2 file as its guest (raw) view. It needs random access.
	OpQcow2Decode = "qcow2-decode"
	// OpQcow2Encode writes the guest (raw) view as a qcow2 file laid out as Params (a
	// qcow2.Layout).
	OpQcow2Encode = "qcow2-encode"
)

func init() {
	register(opSpec[noParams]{
		name:         OpQcow2Decode,
		randomAccess: true,
		params:       none,
		apply: func(_ *call, _ noParams, in *value) (*value, error) {
			img, err := qcow2.Open(in.ra, in.size)
			if err != nil {
				return nil, err
			}
			return &value{key: in.key + "|" + OpQcow2Decode, ra: img, size: img.Size()}, nil
		},
	})
	register(opSpec[*qcow2.Layout]{
		name:   OpQcow2Encode,
		params: fromJSON[qcow2.Layout](false),
		apply: func(_ *call, l *qcow2.Layout, in *value) (*value, error) {
			return pipe(in, in.key+"|"+OpQcow2Encode, l.FileSize, func(w io.Writer, r io.Reader) error {
				return qcow2.Encode(w, r, l)
			}), nil
		},
	})
}

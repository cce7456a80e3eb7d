package rehydrate

import (
	"io"

	"github.com/rehydrator/rehydrator/vhd"
)

// OpVHDFixed writes the guest view as a fixed VHD (the guest and a 512-byte footer).
// Params: vhd.Fixed.
const OpVHDFixed = "vhd-fixed"

func init() {
	register(opSpec[*vhd.Fixed]{
		name:   OpVHDFixed,
		params: fromJSON[vhd.Fixed](true),
		apply: func(_ *call, p *vhd.Fixed, in *value) (*value, error) {
			return pipe(in, in.key+"|"+OpVHDFixed, p.Size(), func(w io.Writer, r io.Reader) error {
				return vhd.WriteFixed(w, r, p)
			}), nil
		},
	})
}

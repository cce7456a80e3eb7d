package rehydrate

import (
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/vmdk"
)

// OpVMDKEncode writes the guest (raw) view as a streamOptimized VMDK as qemu-img writes it.
// Params: vmdk.Params (header, descriptor with its CID, adapter and hardware version, grain sizes).
const OpVMDKEncode = "vmdk-encode"

// vmdkCanEncode reports whether this build has vmdk-encode's zlib (a variable for tests).
var vmdkCanEncode = vmdk.CanEncode

func init() {
	register(opSpec[*vmdk.Params]{
		name:   OpVMDKEncode,
		params: fromJSON[vmdk.Params](true),
		apply: func(_ *call, p *vmdk.Params, in *value) (*value, error) {
			if err := vmdkCanEncode(); err != nil {
				return nil, fmt.Errorf("%w (this rehydrator was built with CGO_ENABLED=0; use a cgo build, like the image's own binary)", err)
			}
			return pipe(in, in.key+"|"+OpVMDKEncode, p.FileSize, func(w io.Writer, r io.Reader) error {
				err := vmdk.Encode(w, r, p)
				if _, ok := err.(*vmdk.MismatchError); ok {
					err = nil // those grains keep their recorded slots; the patch that follows fixes them
				}
				return err
			}), nil
		},
	})
}

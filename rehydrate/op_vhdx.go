package rehydrate

import (
	"io"

	"github.com/rehydrator/rehydrator/vhdx"
)

// OpVHDXDynamic writes the guest view as a dynamic VHDX (qemu-img convert -O vhdx, Hyper-V's
// disk): the layout's bytes outside the payload blocks, verbatim, around the guest's blocks.
// Params: vhdx.Layout, its payload blocks in guest order. Named like vhd-fixed: the op writes
// one kind of the format.
const OpVHDXDynamic = "vhdx-dynamic"

// vhdxParams is a vhdx.Layout (the same JSON) that the streaming writer can take.
type vhdxParams struct{ vhdx.Layout }

// Validate also refuses payload blocks out of guest order here, in the recipe, rather than
// halfway through the file: the step streams the guest, as qemu-img writes it.
func (p *vhdxParams) Validate() error {
	if err := p.Layout.Validate(); err != nil {
		return err
	}
	if !p.InOrder() {
		return vhdx.ErrOrder
	}
	return nil
}

func init() {
	register(opSpec[*vhdxParams]{
		name:   OpVHDXDynamic,
		params: fromJSON[vhdxParams](true),
		apply: func(_ *call, p *vhdxParams, in *value) (*value, error) {
			return pipe(in, in.key+"|"+OpVHDXDynamic, p.Size(), func(w io.Writer, r io.Reader) error {
				return vhdx.Write(w, r, &p.Layout)
			}), nil
		},
	})
}

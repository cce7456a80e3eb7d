package rehydrate

import (
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/ociarchive"
)

// OpOCIArchive writes a tar byte for byte from its layout (every header record verbatim and
// the data of the small members: the OCI layout's JSON files) with the data of its one
// external member taken from the input: kubevirt's .ociarchive around its gzip layer, and that
// layer's own tar around the qcow2. Params: ociarchive.Layout with exactly one external member.
const OpOCIArchive = "ociarchive"

// ociParams is an ociarchive.Layout (the same JSON) with one external member.
type ociParams struct{ ociarchive.Layout }

func (p *ociParams) Validate() error {
	if n := len(p.External()); n != 1 {
		return fmt.Errorf("%d external members, want exactly one (the step's input)", n)
	}
	return p.Layout.Validate()
}

func init() {
	register(opSpec[*ociParams]{
		name:   OpOCIArchive,
		params: fromJSON[ociParams](true),
		apply: func(_ *call, p *ociParams, in *value) (*value, error) {
			return pipe(in, in.key+"|"+OpOCIArchive, p.Size(), func(w io.Writer, r io.Reader) error {
				return ociarchive.Write(w, &p.Layout, r)
			}), nil
		},
	})
}

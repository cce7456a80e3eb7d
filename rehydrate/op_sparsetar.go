package rehydrate

import (
	"io"

	"github.com/rehydrator/rehydrator/sparsetar"
)

// OpSparseTar writes a file as a tar holding it in GNU's old sparse format (GCP's disk.raw in
// a tar). Params: sparsetar.Layout.
const OpSparseTar = "gnu-sparse-tar"

func init() {
	register(opSpec[*sparsetar.Layout]{
		name:   OpSparseTar,
		params: fromJSON[sparsetar.Layout](true),
		apply: func(_ *call, p *sparsetar.Layout, in *value) (*value, error) {
			a, _ := p.Parse() // Validate has parsed it
			return pipe(in, in.key+"|"+OpSparseTar, a.Size(), func(w io.Writer, r io.Reader) error {
				return sparsetar.Write(w, r, p)
			}), nil
		},
	})
}

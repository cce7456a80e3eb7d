package rehydrate

import (
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/precomp"
)

// OpZstdRestore turns a precomp expanded stream back into the original, its zstd frames
// compressed again.
const OpZstdRestore = "zstd-restore"

func init() {
	register(opSpec[noParams]{
		name:   OpZstdRestore,
		params: none,
		apply: func(_ *call, _ noParams, in *value) (*value, error) {
			return pipe(in, in.key+"|"+OpZstdRestore, -1, func(w io.Writer, r io.Reader) error {
				if err := precomp.Restore(w, r); err != nil {
					return fmt.Errorf("zstd-restore: %w", err)
				}
				return nil
			}), nil
		},
	})
}

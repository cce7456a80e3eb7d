package rehydrate

import "github.com/rehydrator/rehydrator/x86filter"

// OpX86Decode turns x86filter-encoded bytes back into the original (CALL/JMP targets relative
// again), as a stream and, when its input has random access, with random access too.
const OpX86Decode = "x86-decode"

func init() {
	register(opSpec[noParams]{
		name:   OpX86Decode,
		params: none,
		apply: func(_ *call, _ noParams, in *value) (*value, error) {
			v := &value{key: in.key + "|" + OpX86Decode, size: in.size}
			if in.r != nil {
				v.r = readCloser{x86filter.NewReader(in.r), in.r}
			}
			if in.ra != nil && in.size >= 0 {
				v.ra = x86filter.NewReaderAt(in.ra, in.size)
			}
			return v, nil
		},
	})
}

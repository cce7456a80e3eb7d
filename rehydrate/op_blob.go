package rehydrate

import "fmt"

// OpBlob starts a pipeline with the content of a stored blob (Step.Blob).
const OpBlob = "blob"

// blobParams name the blob a blob or patch step reads.
type blobParams struct{ Digest string }

func (p blobParams) Validate() error {
	if !digestRE.MatchString(p.Digest) {
		return fmt.Errorf("blob digest %q is not sha256:<64 hex>", p.Digest)
	}
	return nil
}

func blobOf(s *Step) (blobParams, error) { return blobParams{s.Blob}, nil }

func (p blobParams) list() []string { return []string{p.Digest} }

// blobString renders a step that reads a blob: "blob(sha256:ab12…)".
func blobString(s *Step) string { return fmt.Sprintf("%s(%s)", s.Op, ShortDigest(s.Blob)) }

func init() {
	register(opSpec[blobParams]{
		name:   OpBlob,
		source: true,
		params: blobOf,
		str:    blobString,
		blobs:  blobParams.list,
		apply: func(c *call, p blobParams, _ *value) (*value, error) {
			return c.e.openBlob(c.ctx, p.Digest)
		},
	})
}

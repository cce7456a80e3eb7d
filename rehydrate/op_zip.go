package rehydrate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/reflate"
	"github.com/rehydrator/rehydrator/zipmember"
)

// OpZip writes a one-member zip archive byte for byte around its input, the member's contents:
// the archive's bytes before and after the member's data verbatim (Params: zipmember.Layout),
// and the member's data either the input itself (stored) or its deflate stream rebuilt by
// reflate from the input and the reconstruction blob (Step.Blob): Info-ZIP's `zip -9j`, as
// Fedora CoreOS ships hyperv's VHDX.
const OpZip = "zip"

// zipParams are the archive's layout and, for a deflated member, reflate's blob.
type zipParams struct {
	zipmember.Layout
	Recon string `json:"-"` // Step.Blob; empty for a stored member
}

func (p *zipParams) Validate() error {
	if p.Recon != "" {
		if err := (blobParams{p.Recon}).Validate(); err != nil {
			return err
		}
	}
	return p.Layout.Validate()
}

func zipOf(s *Step) (*zipParams, error) {
	p := &zipParams{Recon: s.Blob}
	dec := json.NewDecoder(bytes.NewReader(s.Params))
	dec.DisallowUnknownFields()
	return p, dec.Decode(&p.Layout)
}

func init() {
	register(opSpec[*zipParams]{
		name:   OpZip,
		params: zipOf,
		str: func(s *Step) string {
			if s.Blob == "" {
				return OpZip + "(stored)"
			}
			return blobString(s)
		},
		blobs: func(p *zipParams) []string {
			if p.Recon == "" {
				return nil
			}
			return []string{p.Recon}
		},
		apply: func(c *call, p *zipParams, in *value) (*value, error) {
			var recon []byte
			if p.Recon != "" {
				var err error
				if recon, err = readReconBlob(c, p.Recon); err != nil {
					return nil, err
				}
			}
			return pipe(in, in.key+"|"+OpZip+":"+p.Recon, p.Size(), func(w io.Writer, r io.Reader) error {
				if recon == nil {
					return zipmember.Write(w, r, &p.Layout)
				}
				pr, pw := io.Pipe()
				go func() { pw.CloseWithError(reflate.RebuildStream(pw, r, recon)) }()
				err := zipmember.Write(w, pr, &p.Layout)
				pr.CloseWithError(err)
				if err != nil {
					return fmt.Errorf("zip: %w", err)
				}
				return nil
			}), nil
		},
	})
}

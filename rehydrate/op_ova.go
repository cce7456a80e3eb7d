package rehydrate

import (
	"bytes"
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/vmdk"
)

// OpOVA wraps a VMDK in an OVA (tar) with the VMDK as one member. Params: OVAParams.
const OpOVA = "ova"

// OVAParams describe an OVA around the VMDK a step receives.
type OVAParams struct {
	Archive vmdk.OVA `json:"archive"`
	// Disk names the member whose contents are the step's input.
	Disk string `json:"disk"`
	// Files holds the contents of every other member (the .ovf, the .mf).
	Files map[string][]byte `json:"files,omitempty"`
}

// Validate checks that every member has its contents.
func (p *OVAParams) Validate() error {
	if p.Archive.Find(p.Disk) == nil {
		return fmt.Errorf("ova has no member %q for the disk", p.Disk)
	}
	found := false
	for _, m := range p.Archive.Members {
		if m.Name == p.Disk && !found {
			found = true
			continue
		}
		f, ok := p.Files[m.Name]
		if !ok {
			return fmt.Errorf("ova member %q has no contents", m.Name)
		}
		if int64(len(f)) != m.Size {
			return fmt.Errorf("ova member %q: %d bytes of contents, its header says %d", m.Name, len(f), m.Size)
		}
	}
	if !found {
		return fmt.Errorf("ova has no member %q for the disk", p.Disk)
	}
	return nil
}

// Size is the size of the OVA.
func (p *OVAParams) Size() int64 {
	n := p.Archive.TrailerSize
	for _, m := range p.Archive.Members {
		n += int64(len(m.RawHeader)) + m.Size + m.PadSize
	}
	return n
}

func init() {
	register(opSpec[*OVAParams]{
		name:   OpOVA,
		params: fromJSON[OVAParams](true),
		apply: func(_ *call, p *OVAParams, in *value) (*value, error) {
			return pipe(in, in.key+"|"+OpOVA, p.Size(), func(w io.Writer, r io.Reader) error {
				err := vmdk.WriteOVA(w, &p.Archive, func(m *vmdk.OVAMember) (io.Reader, error) {
					if m.Name == p.Disk {
						return r, nil
					}
					return bytes.NewReader(p.Files[m.Name]), nil
				})
				if err != nil {
					return err
				}
				var one [1]byte
				if n, _ := io.ReadFull(r, one[:]); n > 0 {
					return fmt.Errorf("ova: disk %q is longer than its member", p.Disk)
				}
				return nil
			}), nil
		},
	})
}

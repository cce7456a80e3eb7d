package rehydrate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/sparsetar"
	"github.com/rehydrator/rehydrator/vhd"
	"github.com/rehydrator/rehydrator/vmdk"
)

// Disk format steps: each writes a shipped format around its input, byte for byte as the
// original was written, from parameters read from the original at build time. A patch after
// one carries whatever bytes the re-encoding does not reproduce.
const (
	// OpVMDKEncode: guest (raw) view -> streamOptimized VMDK as qemu-img writes it.
	// Params: vmdk.Params (header, descriptor with its CID, adapter and hardware version, grain sizes).
	OpVMDKEncode = "vmdk-encode"
	// OpOVA: VMDK -> OVA (tar) with the VMDK as one member. Params: OVAParams.
	OpOVA = "ova"
	// OpVHDFixed: guest view -> fixed VHD (the guest and a 512-byte footer). Params: vhd.Fixed.
	OpVHDFixed = "vhd-fixed"
	// OpSparseTar: a file -> a tar holding it in GNU's old sparse format (GCP's disk.raw in
	// a tar). Params: sparsetar.Layout.
	OpSparseTar = "gnu-sparse-tar"
)

func init() {
	for _, op := range []string{OpVMDKEncode, OpOVA, OpVHDFixed, OpSparseTar} {
		knownFeatures[op] = true
	}
}

// vmdkCanEncode reports whether this build has vmdk-encode's zlib (a variable for tests).
var vmdkCanEncode = vmdk.CanEncode

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

// formatParams decodes and validates the params of a format step; nil, nil for other ops.
func formatParams(s Step) (any, error) {
	var p interface{ Validate() error }
	switch s.Op {
	case OpVMDKEncode:
		p = &vmdk.Params{}
	case OpOVA:
		p = &OVAParams{}
	case OpVHDFixed:
		p = &vhd.Fixed{}
	case OpSparseTar:
		p = &sparsetar.Layout{}
	default:
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(s.Params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, fmt.Errorf("%w: %s params: %v", ErrBadRecipe, s.Op, err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s params: %v", ErrBadRecipe, s.Op, err)
	}
	return p, nil
}

// applyFormat runs a format step on in, streaming.
func (e *Engine) applyFormat(s Step, in *value) (*value, error) {
	p, err := formatParams(s)
	if err != nil || p == nil {
		in.close()
		if p == nil && err == nil {
			err = fmt.Errorf("%w: unknown op %q", ErrUnknownFeature, s.Op)
		}
		return nil, err
	}
	var write func(w io.Writer, r io.Reader) error
	var size int64
	switch p := p.(type) {
	case *vmdk.Params:
		if err := vmdkCanEncode(); err != nil {
			in.close()
			return nil, fmt.Errorf("%w (this rehydrator was built with CGO_ENABLED=0; use a cgo build, like the image's own binary)", err)
		}
		size = p.FileSize
		write = func(w io.Writer, r io.Reader) error {
			err := vmdk.Encode(w, r, p)
			if _, ok := err.(*vmdk.MismatchError); ok {
				err = nil // those grains keep their recorded slots; the patch that follows fixes them
			}
			return err
		}
	case *OVAParams:
		size = p.Size()
		write = func(w io.Writer, r io.Reader) error {
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
		}
	case *vhd.Fixed:
		size = p.Size()
		write = func(w io.Writer, r io.Reader) error { return vhd.WriteFixed(w, r, p) }
	case *sparsetar.Layout:
		a, _ := p.Parse()
		size = a.Size()
		write = func(w io.Writer, r io.Reader) error { return sparsetar.Write(w, r, p) }
	}
	src := in.stream()
	pr, pw := io.Pipe()
	go func() {
		err := write(pw, src)
		src.Close()
		in.close()
		pw.CloseWithError(err)
	}()
	return &value{key: in.key + "|" + s.Op, r: pr, size: size}, nil
}

// Run runs a pipeline of steps against the blobs and writes what it produces to w, with no
// size or checksum check: what a planner uses to see what a candidate recipe makes. It
// returns the number of bytes written.
func Run(ctx context.Context, src BlobSource, blobs []Blob, steps []Step, w io.Writer) (int64, error) {
	r := &Recipe{SchemaVersion: SchemaVersion, Blobs: blobs, Artifacts: []Artifact{{ID: "candidate", Name: "candidate", Steps: steps}}}
	e := NewEngine(r, src, "")
	defer e.Close()
	v, err := e.open(ctx, &r.Artifacts[0], 0)
	if err != nil {
		return 0, err
	}
	rc := v.stream()
	defer rc.Close()
	return io.Copy(w, rc)
}

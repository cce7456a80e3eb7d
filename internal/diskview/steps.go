package diskview

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/sparsetar"
	"github.com/rehydrator/rehydrator/vhd"
	"github.com/rehydrator/rehydrator/vhdx"
	"github.com/rehydrator/rehydrator/vmdk"
)

// CanEncodeVMDK reports whether this build has vmdk-encode's zlib (a variable for tests).
var CanEncodeVMDK = vmdk.CanEncode

// maxOVAFile bounds the OVA members other than the disk, which the recipe carries inline.
const maxOVAFile = 1 << 20

func vhdSteps(fx *vhd.Fixed) func() ([]rehydrate.Step, error) {
	return func() ([]rehydrate.Step, error) { return []rehydrate.Step{step(rehydrate.OpVHDFixed, fx)}, nil }
}

func sparseTarSteps(a *sparsetar.Archive) func() ([]rehydrate.Step, error) {
	return func() ([]rehydrate.Step, error) {
		return []rehydrate.Step{step(rehydrate.OpSparseTar, &a.Layout)}, nil
	}
}

// vhdxSteps is vhdx-dynamic with the file's layout. A layout that cannot be kept (blocks that
// overlap, too many bytes outside them) or streamed (blocks out of guest order, which qemu-img
// never writes) leaves the file whole.
func vhdxSteps(img *vhdx.Image) ([]rehydrate.Step, error) {
	l, err := img.Layout()
	if errors.Is(err, vhdx.ErrCorrupt) || errors.Is(err, vhdx.ErrUnsupported) {
		return nil, fmt.Errorf("%w: %v", ErrNoEncoder, err)
	}
	if err != nil {
		return nil, err
	}
	if !l.InOrder() {
		return nil, fmt.Errorf("%w: vhdx-dynamic cannot reproduce it: %v", ErrNoEncoder, vhdx.ErrOrder)
	}
	return []rehydrate.Step{step(rehydrate.OpVHDXDynamic, l)}, nil
}

func vmdkSteps(img *vmdk.Image) ([]rehydrate.Step, error) {
	p, err := img.Params()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoEncoder, err)
	}
	if p.Layout != vmdk.LayoutQemu {
		return nil, fmt.Errorf("%w: vmdk-encode cannot reproduce it: %s", ErrNoEncoder, p.LayoutNote)
	}
	if err := CanEncodeVMDK(); err != nil {
		return nil, fmt.Errorf("%w: vmdk-encode needs a cgo build of rehydrator (CGO_ENABLED=1 with zlib1g-dev, see vmdk/doc.go), this one has none", ErrNoEncoder)
	}
	p.Deflate = vmdk.EncoderDeflate() // what reproduces it, recorded for the reader
	return []rehydrate.Step{step(rehydrate.OpVMDKEncode, p)}, nil
}

// ovaSteps are the disk's vmdk-encode and the ova step that puts it back among the other
// members, which the recipe carries inline.
func ovaSteps(r io.ReaderAt, o *vmdk.OVA, disk *vmdk.OVAMember, img *vmdk.Image) ([]rehydrate.Step, error) {
	op := &rehydrate.OVAParams{Archive: *o, Files: map[string][]byte{}}
	for i := range o.Members {
		m := &o.Members[i]
		if m == disk {
			continue
		}
		if m.Size > maxOVAFile {
			return nil, fmt.Errorf("%w: ova member %q has %d bytes, more than the %d a recipe carries inline", ErrNoEncoder, m.Name, m.Size, maxOVAFile)
		}
		b := make([]byte, m.Size)
		if _, err := m.Open(r).ReadAt(b, 0); err != nil && !(err == io.EOF && m.Size == 0) {
			return nil, fmt.Errorf("ova member %q: %w", m.Name, err)
		}
		if _, dup := op.Files[m.Name]; dup {
			return nil, fmt.Errorf("%w: ova has two members named %q", ErrNoEncoder, m.Name)
		}
		op.Files[m.Name] = b
	}
	op.Disk = disk.Name
	steps, err := vmdkSteps(img)
	if err != nil {
		return nil, err
	}
	return append(steps, step(rehydrate.OpOVA, op)), nil
}

func step(op string, params any) rehydrate.Step {
	b, err := json.Marshal(params)
	if err != nil {
		panic(err) // params are plain structs
	}
	return rehydrate.Step{Op: op, Params: b}
}

// Package diskview is the one table of disk container formats Fedora CoreOS ships (qcow2,
// streamOptimized VMDK, dynamic VHDX, an OVA holding a VMDK, fixed VHD, GCP's sparse tar of
// disk.raw; anything else is raw): how each is recognised, how it opens as its guest view (the bytes a virtual
// machine sees), and the recipe steps that write it again around that view. dehydrate, the
// platformid command and list --check all read disks through it. The magic numbers live in the
// format packages (their Sniff functions); this package only orders them.
package diskview

import (
	"errors"
	"io"

	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/sparsetar"
	"github.com/rehydrator/rehydrator/vhd"
	"github.com/rehydrator/rehydrator/vhdx"
	"github.com/rehydrator/rehydrator/vmdk"
)

// View is a disk's guest view.
type View struct {
	io.ReaderAt
	Size   int64
	Format string // a Format's Name, or "raw"
	// Steps, when the format has recipe steps, returns those that write the file again from
	// the guest view; an error wrapping ErrNoEncoder says why this file or build cannot.
	Steps func() ([]rehydrate.Step, error)
}

// A Format is one entry of the table.
type Format struct {
	Name string // what View.Format and the build's messages say
	// Sniff says whether the file claims to be of this format (its magic): cheap, and never
	// an error, so that the first format that claims a file is the one that opens it.
	Sniff func(r io.ReaderAt, size int64) bool
	// Open opens the guest view of a file Sniff claimed; its error says what is damaged.
	Open func(r io.ReaderAt, size int64) (*View, error)
}

// Formats is the table, in the order the formats are tried. A format whose signature is
// strong (a magic at offset 0) comes before one recognised by its structure or by bytes at
// its end: a VHDX's last bytes are guest data, which may end like a VHD's footer.
var Formats = []Format{
	{"qcow2", qcow2.Sniff, openQcow2},
	{"vmdk", vmdk.Sniff, openVMDK},
	{"vhdx", vhdx.Sniff, openVHDX},
	{"vhd", vhd.Sniff, openVHD},
	{"ova", vmdk.SniffOVA, openOVA},
	{"gnu-sparse-tar", sparsetar.Sniff, openSparseTar},
}

// ErrNoEncoder marks a recognised file whose format steps this file or this build cannot
// reproduce: it is stored as it is.
var ErrNoEncoder = errors.New("stored whole")

// Sniff returns the format that claims the file, or nil for a raw disk.
func Sniff(r io.ReaderAt, size int64) *Format {
	for i := range Formats {
		if Formats[i].Sniff(r, size) {
			return &Formats[i]
		}
	}
	return nil
}

// Open recognises the format of the size-byte image in r by its contents and opens its guest
// view; anything no format claims is raw. A file that has a format's signature but is damaged
// gives that format's error.
func Open(r io.ReaderAt, size int64) (*View, error) {
	f := Sniff(r, size)
	if f == nil {
		return &View{ReaderAt: r, Size: size, Format: "raw"}, nil
	}
	v, err := f.Open(r, size)
	if err != nil {
		return nil, err
	}
	v.Format = f.Name
	return v, nil
}

func openQcow2(r io.ReaderAt, size int64) (*View, error) {
	img, err := qcow2.Open(r, size)
	if err != nil {
		return nil, err
	}
	return &View{ReaderAt: img, Size: img.Size()}, nil
}

func openVHD(r io.ReaderAt, size int64) (*View, error) {
	fx, err := vhd.OpenFixed(r, size)
	if err != nil {
		return nil, err
	}
	return &View{ReaderAt: fx.Guest(r), Size: fx.DataSize, Steps: vhdSteps(fx)}, nil
}

func openSparseTar(r io.ReaderAt, size int64) (*View, error) {
	a, err := sparsetar.Open(r, size)
	if err != nil {
		return nil, err
	}
	return &View{ReaderAt: a.File(r), Size: a.RealSize, Steps: sparseTarSteps(a)}, nil
}

func openVMDK(r io.ReaderAt, size int64) (*View, error) {
	img, err := vmdk.Open(r, size)
	if err != nil {
		return nil, err
	}
	return &View{ReaderAt: img, Size: img.Size(), Steps: func() ([]rehydrate.Step, error) { return vmdkSteps(img) }}, nil
}

func openOVA(r io.ReaderAt, size int64) (*View, error) {
	o, disk, err := vmdk.FindOVADisk(r, size)
	if err != nil {
		return nil, err
	}
	img, err := vmdk.Open(disk.Open(r), disk.Size)
	if err != nil {
		return nil, err
	}
	return &View{ReaderAt: img, Size: img.Size(), Steps: func() ([]rehydrate.Step, error) { return ovaSteps(r, o, disk, img) }}, nil
}

func openVHDX(r io.ReaderAt, size int64) (*View, error) {
	img, err := vhdx.Open(r, size)
	if err != nil {
		return nil, err
	}
	return &View{ReaderAt: img, Size: img.VirtualSize, Steps: func() ([]rehydrate.Step, error) { return vhdxSteps(img) }}, nil
}

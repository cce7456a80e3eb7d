// Package diskview opens a disk image file of any format Fedora CoreOS ships (qcow2,
// streamOptimized VMDK, an OVA holding one, fixed VHD, GCP's sparse tar of disk.raw, raw)
// as its guest view: the bytes a virtual machine sees.
package diskview

import (
	"io"

	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/sparsetar"
	"github.com/rehydrator/rehydrator/vhd"
	"github.com/rehydrator/rehydrator/vmdk"
)

// View is a disk's guest view.
type View struct {
	io.ReaderAt
	Size   int64
	Format string // "qcow2", "vmdk", "ova", "vhd", "gnu-sparse-tar" or "raw"
}

// Open recognises the format of the size-byte image in r by its contents; anything else is
// raw. A file that has a format's signature but is damaged gives that format's error.
func Open(r io.ReaderAt, size int64) (*View, error) {
	var magic [4]byte
	r.ReadAt(magic[:], 0)
	switch string(magic[:]) {
	case "QFI\xfb":
		img, err := qcow2.Open(r, size)
		if err != nil {
			return nil, err
		}
		return &View{img, img.Size(), "qcow2"}, nil
	case "KDMV":
		img, err := vmdk.Open(r, size)
		if err != nil {
			return nil, err
		}
		return &View{img, img.Size(), "vmdk"}, nil
	}
	if fx, err := vhd.OpenFixed(r, size); err == nil {
		return &View{fx.Guest(r), fx.DataSize, "vhd"}, nil
	}
	if o, err := vmdk.ReadOVA(r, size); err == nil {
		for i := range o.Members {
			m := &o.Members[i]
			var mm [4]byte
			if m.Size < 4 {
				continue
			}
			if _, err := m.Open(r).ReadAt(mm[:], 0); err == nil && string(mm[:]) == "KDMV" {
				img, err := vmdk.Open(m.Open(r), m.Size)
				if err != nil {
					return nil, err
				}
				return &View{img, img.Size(), "ova"}, nil
			}
		}
	}
	if a, err := sparsetar.Open(r, size); err == nil {
		return &View{a.File(r), a.RealSize, "gnu-sparse-tar"}, nil
	}
	return &View{r, size, "raw"}, nil
}

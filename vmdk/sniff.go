package vmdk

import (
	"archive/tar"
	"fmt"
	"io"
	"strings"
)

// Sniff reports whether the size-byte file in r starts with the VMDK4 sparse magic: whether it
// claims to be a sparse or streamOptimized VMDK (Open then says whether it is a good one).
func Sniff(r io.ReaderAt, size int64) bool {
	var b [len(Magic)]byte
	if size < int64(len(b)) {
		return false
	}
	n, _ := r.ReadAt(b[:], 0)
	return n == len(b) && string(b[:]) == Magic
}

// SniffOVA reports whether the size-byte file in r claims to be an OVA: a tar archive whose
// first member is the .ovf descriptor, as the OVF specification puts it, or one that holds a
// member starting with the VMDK magic. ReadOVA and Open then say whether it is a good one.
func SniffOVA(r io.ReaderAt, size int64) bool {
	tr := tar.NewReader(io.NewSectionReader(r, 0, size))
	if h, err := tr.Next(); err == nil && strings.HasSuffix(strings.ToLower(h.Name), ".ovf") {
		return true
	}
	_, _, err := FindOVADisk(r, size)
	return err == nil
}

// FindOVADisk reads the OVA in r and returns it with its disk: the first member that starts
// with the VMDK magic.
func FindOVADisk(r io.ReaderAt, size int64) (*OVA, *OVAMember, error) {
	o, err := ReadOVA(r, size)
	if err != nil {
		return nil, nil, err
	}
	for i := range o.Members {
		m := &o.Members[i]
		if Sniff(m.Open(r), m.Size) {
			return o, m, nil
		}
	}
	return o, nil, fmt.Errorf("%w: no member starts with the VMDK magic %q", ErrNotOVA, Magic)
}

package zipmember_test

import (
	"io"
	"os"

	"github.com/rehydrator/rehydrator/zipmember"
)

// The hyperv artifact: the VHDX inside (Reader, CRC-checked), and the zip
// around its deflate stream (Layout, a few hundred bytes).
func Example() {
	f, err := os.Open("fedora-coreos-hyperv.x86_64.vhdx.zip")
	if err != nil {
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	a, err := zipmember.Open(f, st.Size())
	if err != nil {
		return
	}
	vhdx := a.Reader() // the member's contents
	_, _ = io.Copy(io.Discard, vhdx)
	layout, _ := a.Layout()
	_ = zipmember.Write(io.Discard, a.Raw(), layout) // the same bytes as the archive
}

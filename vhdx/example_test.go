package vhdx_test

import (
	"encoding/json"
	"io"
	"os"

	"github.com/rehydrator/rehydrator/vhdx"
)

// At build time: the guest view goes to the delta engine, the Layout into
// the recipe step's params. At rehydration: Write streams the guest back in.
func Example() {
	f, err := os.Open("fedora-coreos-hyperv.x86_64.vhdx")
	if err != nil {
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	img, err := vhdx.Open(f, st.Size())
	if err != nil {
		return
	}
	layout, err := img.Layout()
	if err != nil {
		return
	}
	params, _ := json.Marshal(layout)
	_ = params

	var out io.Writer = io.Discard
	_ = vhdx.Write(out, img.Guest(), layout) // the same bytes as the file
}

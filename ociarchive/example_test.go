package ociarchive_test

import (
	"io"
	"os"

	"github.com/rehydrator/rehydrator/ociarchive"
)

// The kubevirt artifact: the layer blob (gzip of a tar of /disk/*.qcow2)
// is supplied at write time; everything else is in the Layout.
func Example() {
	f, err := os.Open("fedora-coreos-kubevirt.x86_64.ociarchive")
	if err != nil {
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	a, err := ociarchive.Open(f, st.Size())
	if err != nil {
		return
	}
	layers, err := a.Layers() // ["blobs/sha256/<hex>"]
	if err != nil {
		return
	}
	layout, _ := a.Layout(layers...)
	var blobs []io.Reader
	for _, n := range layers {
		blobs = append(blobs, a.Data(a.Find(n)))
	}
	_ = ociarchive.Write(io.Discard, layout, blobs...) // the same bytes as the archive
}

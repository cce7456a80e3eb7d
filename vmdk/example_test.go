package vmdk_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rehydrator/rehydrator/vmdk"
)

// Planning: describe an aws.vmdk and check that it re-encodes bit for bit.
func Example_plan() {
	f, err := os.Open("aws.vmdk")
	if err != nil {
		return
	}
	defer f.Close()
	st, _ := f.Stat()
	img, err := vmdk.Open(f, st.Size())
	if err != nil {
		return
	}
	p, err := img.Params()
	if err != nil || p.Layout != vmdk.LayoutQemu {
		return // carry the file some other way
	}
	rep, err := img.Verify()
	if err != nil {
		return
	}
	p.Deflate = rep.Deflate // e.g. "zlib-1.2.13 level 6"
	fmt.Println(rep.Identical(), len(rep.Mismatched))
	json.NewEncoder(os.Stdout).Encode(p)
}

// Rehydrating: write the vmdk from a guest view (say metal.raw, stamped) and
// the recorded Params; a delta then fixes whatever differs.
func Example_rehydrate() {
	var p vmdk.Params
	guest, err := os.Open("metal.raw")
	if err != nil {
		return
	}
	defer guest.Close()
	err = vmdk.Encode(io.Discard, guest, &p)
	var me *vmdk.MismatchError
	if errors.As(err, &me) {
		fmt.Println(len(me.LBAs), "grains differ; the delta carries them")
	}
}

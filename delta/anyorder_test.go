package delta

import (
	"bytes"
	"testing"
)

// Files of a tree laid out in another order (a squashfs of a disk's root filesystem): forward-only
// copies lose most of them; AnyOrder copies them all, and PatchAt applies the delta.
func TestAnyOrderShuffledFiles(t *testing.T) {
	const files, fileLen = 64, 12 << 10
	base := randomBytes(7, files*fileLen)
	r := rng(99)
	var target []byte
	for _, i := range permutation(&r, files) {
		target = append(target, base[i*fileLen:(i+1)*fileLen]...)
		target = append(target, 0xA5, byte(i)) // a header between files, as an archive has
	}
	var fwd, any bytes.Buffer
	if _, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &fwd, Options{}); err != nil {
		t.Fatal(err)
	}
	st, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &any, Options{AnyOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := PatchAt(bytes.NewReader(base), int64(len(base)), bytes.NewReader(any.Bytes()), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), target) {
		t.Fatal("PatchAt of the any-order delta differs from the target")
	}
	if st.LiteralBytes > 4*files {
		t.Errorf("any-order delta carries %d literal bytes, want only the %d header bytes", st.LiteralBytes, 2*files)
	}
	if fwd.Len() < 4*any.Len() {
		t.Errorf("forward-only delta %d bytes, any-order %d: expected the shuffle to defeat forward-only copies", fwd.Len(), any.Len())
	}
	t.Logf("forward-only %d bytes, any-order %d bytes (%d copies)", fwd.Len(), any.Len(), st.Copies)
}

func permutation(r *rng, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

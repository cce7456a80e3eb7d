package delta

import (
	"bytes"
	"math/rand"
	"testing"
)

func TestComputeAligned(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	base := make([]byte, 8<<20)
	for i := 0; i < 40; i++ { // data islands in a sparse disk
		off := rng.Intn(len(base) - 70000)
		rng.Read(base[off : off+rng.Intn(65536)])
	}
	edited := bytes.Clone(base)
	for i := 0; i < 30; i++ {
		edited[rng.Intn(len(edited))] ^= 0x5a
	}
	copy(edited[5<<20:], "ignition.platform.id=metal")
	cases := []struct {
		name         string
		base, target []byte
		maxDelta     int64
	}{
		{"in-place edits", base, edited, 2048},
		{"identical", base, base, 64},
		{"target longer", base, append(bytes.Clone(base), []byte("tail")...), 128},
		{"target shorter", base, base[:len(base)-12345], 64},
		{"empty base", nil, edited[:1000], 1100},
		{"empty target", base, nil, 16},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d bytes.Buffer
			st, err := ComputeAligned(bytes.NewReader(c.base), int64(len(c.base)), bytes.NewReader(c.target), int64(len(c.target)), &d)
			if err != nil {
				t.Fatal(err)
			}
			if int64(d.Len()) > c.maxDelta || st.DeltaSize != int64(d.Len()) {
				t.Fatalf("delta %d bytes (stats say %d), want <= %d", d.Len(), st.DeltaSize, c.maxDelta)
			}
			var out bytes.Buffer
			if err := Patch(bytes.NewReader(c.base), bytes.NewReader(d.Bytes()), &out); err != nil {
				t.Fatal(err) // also proves every copy reads the base forward
			}
			if !bytes.Equal(out.Bytes(), c.target) {
				t.Fatal("patched output differs from the target")
			}
		})
	}
}

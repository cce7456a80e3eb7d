package rehydrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestVMDKGrainsBlobRoundTrip(t *testing.T) {
	for _, m := range []map[uint64][]byte{
		{},
		{0: []byte("RFW-ish")},
		{7: {}, 3: []byte("abc"), 1 << 40: bytes.Repeat([]byte{9}, 300)},
	} {
		got, err := ParseVMDKGrains(MarshalVMDKGrains(m))
		if err != nil || !maps.EqualFunc(got, m, bytes.Equal) {
			t.Fatalf("round trip of %v: %v %v", m, got, err)
		}
	}
}

// A vmdk-grains step needs a blob digest besides vmdk-encode's params.
func TestVMDKGrainsStepWithoutBlob(t *testing.T) {
	s := Step{Op: OpVMDKGrains, Params: json.RawMessage(`{}`)}
	if _, _, err := s.decode(); !errors.Is(err, ErrBadRecipe) || !strings.Contains(err.Error(), "digest") {
		t.Fatalf("decode: %v, want a bad recipe about the blob digest", err)
	}
}

// The blob parser never panics, and what it accepts marshals back to the same bytes.
func FuzzVMDKGrainsBlob(f *testing.F) {
	f.Add(MarshalVMDKGrains(map[uint64][]byte{0: []byte("x"), 5: []byte("yz")}))
	f.Add(MarshalVMDKGrains(map[uint64][]byte{}))
	f.Add([]byte("VGR\x01\xff\xff\xff\xff\x0f"))
	f.Add([]byte("VGR\x01\x02\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseVMDKGrains(b)
		if err != nil {
			if !errors.Is(err, errVGR) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q", err)
			}
			return
		}
		if again := MarshalVMDKGrains(m); !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, marshals back to %x", b, again)
		}
	})
}

package fslist

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/precomp"
)

func TestRootUnknown(t *testing.T) {
	z := make([]byte, 64<<10)
	if _, err := Root(bytes.NewReader(z), 0, int64(len(z))); !errors.Is(err, ErrUnknown) {
		t.Fatalf("zeros: %v, want ErrUnknown", err)
	}
}

// The expansion's header is precomp's: a frame's content starts where Expand writes it.
func TestExpansionMatchesPrecomp(t *testing.T) {
	plan := &precomp.Plan{Level: 3, Frames: []precomp.Frame{{Offset: 10, Length: 5, Expanded: 300}, {Offset: 1000, Length: 7, Expanded: 20}}}
	e, err := Expansion(plan, 2000)
	if err != nil {
		t.Fatal(err)
	}
	total := plan.ExpandedSize(2000)
	// The last plain byte of the original lands on the last byte of the expanded stream.
	got := e.Locate([]filemap.Piece{{Length: 1, Offset: 1999}}, 0)
	if len(got) != 1 || got[0].Offset != total-1 {
		t.Fatalf("last byte at %+v, want %d", got, total-1)
	}
	if f := Mounted([]filemap.File{{Path: "a/b"}}, "boot"); f[0].Path != "boot/a/b" {
		t.Fatalf("Mounted: %s", f[0].Path)
	}
}

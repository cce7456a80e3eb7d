package rehydrate

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/vhdx"
)

// vhdxCase is a dynamic VHDX made by qemu-img (1 MiB blocks; blocks 0 and 2 of 3 hold data)
// with its guest and its vhdx-dynamic step. It is not among formatCases: qemu-img writes
// random GUIDs, and testdata/every-op.* are fixed bytes.
func vhdxCase(t testing.TB) (formatCase, *vhdx.Image) {
	t.Helper()
	dir := t.TempDir()
	guest := make([]byte, 3<<20)
	copy(guest, bytes.Repeat([]byte("vhdx guest "), 9000))
	copy(guest[2<<20+5:], bytes.Repeat([]byte("more "), 300))
	raw, out := filepath.Join(dir, "d.raw"), filepath.Join(dir, "d.vhdx")
	if err := os.WriteFile(raw, guest, 0o644); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vhdx", "-o", "block_size=1M", raw, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, o)
	}
	file, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := vhdx.Open(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := img.Layout()
	if err != nil {
		t.Fatal(err)
	}
	return formatCase{"vhdx", file, guest, mustStep(t, OpVHDXDynamic, l)}, img
}

// vhdx-dynamic writes qemu-img's file again from the guest, through a recipe as an image
// carries it, and refuses a guest that is not the one the layout was read with.
func TestVHDXDynamic(t *testing.T) {
	c, _ := vhdxCase(t)
	r, blobs := recipeFor(c, c.guest)
	doc, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if r, err = ParseRecipe(doc); err != nil {
		t.Fatal(err)
	}
	e := NewEngine(r, blobs, t.TempDir())
	defer e.Close()
	var out bytes.Buffer
	if err := e.Rehydrate(context.Background(), r.Artifacts[0].ID, &out, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), c.file) {
		t.Fatal("vhdx-dynamic wrote other bytes than qemu-img's file")
	}
	changed := bytes.Clone(c.guest)
	changed[7] ^= 0x20
	hole := bytes.Clone(c.guest)
	hole[1<<20+9] = 1 // in block 1, which the file does not hold
	for name, g := range map[string][]byte{"changed": changed, "in a zero block": hole, "short": c.guest[:len(c.guest)-1], "long": append(bytes.Clone(c.guest), 0)} {
		r, blobs := recipeFor(c, g)
		e := NewEngine(r, blobs, t.TempDir())
		err := e.Rehydrate(context.Background(), r.Artifacts[0].ID, io.Discard, nil)
		e.Close()
		if err == nil {
			t.Errorf("guest %s: accepted", name)
		}
	}
}

// A layout whose payload blocks are out of guest order is refused when the recipe is read,
// not halfway through writing the file.
func TestVHDXDynamicOutOfOrder(t *testing.T) {
	c, img := vhdxCase(t)
	var l vhdx.Layout
	if err := json.Unmarshal(c.step.Params, &l); err != nil {
		t.Fatal(err)
	}
	// Swap the BAT entries of blocks 0 and 2 in the layout (entries 0 and 2 of the BAT region:
	// a sector bitmap entry comes only after thousands of blocks).
	if len(img.Blocks) != 3 || img.Blocks[0].State != vhdx.BlockFullyPresent || img.Blocks[2].State != vhdx.BlockFullyPresent {
		t.Fatalf("blocks %+v, want 0 and 2 present", img.Blocks)
	}
	var bat int64 = -1
	for _, rg := range img.Regions {
		if strings.HasPrefix(rg.GUID.String(), "2dc27766-") { // MS-VHDX 2.2.3.1
			bat = rg.Offset
		}
	}
	// The low 3 bytes of an entry: its state and offsets up to 16 MiB (the layout trims the
	// zeros after the last entry).
	entry := func(off int64) []byte {
		for _, ch := range l.Chunks {
			if ch.Off <= off && off+3 <= ch.Off+int64(len(ch.Data)) {
				return ch.Data[off-ch.Off : off-ch.Off+3]
			}
		}
		t.Fatalf("no layout chunk holds the BAT entry at %#x", off)
		return nil
	}
	e0, e2 := entry(bat), entry(bat+16)
	if got := binary.LittleEndian.Uint32(append(bytes.Clone(e0), 0)); got != uint32(img.Blocks[0].FileOff)|vhdx.BlockFullyPresent {
		t.Fatalf("BAT entry 0 is %x", e0)
	}
	tmp := bytes.Clone(e0)
	copy(e0, e2)
	copy(e2, tmp)
	c.step = mustStep(t, OpVHDXDynamic, &l)
	r, _ := recipeFor(c, c.guest)
	doc, _ := r.Marshal()
	_, err := ParseRecipe(doc)
	if !errors.Is(err, ErrBadRecipe) || !strings.Contains(err.Error(), "vhdx-dynamic params") || !strings.Contains(err.Error(), "guest order") {
		t.Fatalf("%v, want an invalid recipe saying the blocks are out of guest order", err)
	}
}

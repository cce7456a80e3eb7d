package rehydrate

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/sparsetar"
	"github.com/rehydrator/rehydrator/vhd"
	"github.com/rehydrator/rehydrator/vmdk"
)

// formatCase is a shipped file, its guest (or member file) view, and the format step that
// writes the file from that view.
type formatCase struct {
	name  string
	file  []byte
	guest []byte
	step  Step
}

func gunzipFile(t testing.TB, p string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustStep(t testing.TB, op string, p any) Step {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return Step{Op: op, Params: b}
}

// formatCases are small files made by the real tools (the seeds of the vmdk and sparsetar
// packages: qemu-img and GNU tar output) and files made here from them (an OVA, a VHD).
func formatCases(t testing.TB) []formatCase {
	t.Helper()
	var out []formatCase
	vm := gunzipFile(t, "../vmdk/testdata/seeds/stream-lsilogic-compat6.vmdk.gz")
	img, err := vmdk.Open(bytes.NewReader(vm), int64(len(vm)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := img.Params()
	if err != nil {
		t.Fatal(err)
	}
	guest, err := io.ReadAll(io.NewSectionReader(img, 0, img.Size()))
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, formatCase{"vmdk", vm, guest, mustStep(t, OpVMDKEncode, p)})

	var ova bytes.Buffer
	tw := tar.NewWriter(&ova)
	ovf := []byte("<Envelope/>\n")
	for _, m := range []struct {
		name string
		b    []byte
	}{{"coreos.ovf", ovf}, {"disk.vmdk", vm}} {
		tw.WriteHeader(&tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.b)), Format: tar.FormatUSTAR})
		tw.Write(m.b)
	}
	tw.Close()
	o, err := vmdk.ReadOVA(bytes.NewReader(ova.Bytes()), int64(ova.Len()))
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, formatCase{"ova", ova.Bytes(), vm, mustStep(t, OpOVA, &OVAParams{Archive: *o, Disk: "disk.vmdk", Files: map[string][]byte{"coreos.ovf": ovf}})})

	paths, _ := filepath.Glob("../sparsetar/testdata/*.tar.gz")
	for _, path := range paths {
		ar := gunzipFile(t, path)
		a, err := sparsetar.Open(bytes.NewReader(ar), int64(len(ar)))
		if err != nil {
			t.Fatal(err)
		}
		file, err := io.ReadAll(io.NewSectionReader(a.File(bytes.NewReader(ar)), 0, a.RealSize))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, formatCase{"tar " + filepath.Base(path), ar, file, mustStep(t, OpSparseTar, &a.Layout)})
	}

	disk := bytes.Repeat([]byte("guest..."), 512)
	footer := make([]byte, vhd.FooterSize)
	copy(footer, "conectix")
	footer[63] = vhd.TypeFixed
	footer[55] = byte(len(disk) >> 8 & 0xff)
	footer[54] = byte(len(disk) >> 16)
	c := vhd.Checksum(footer)
	footer[64], footer[65], footer[66], footer[67] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	fx, err := vhd.OpenFixed(bytes.NewReader(append(bytes.Clone(disk), footer...)), int64(len(disk)+len(footer)))
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, formatCase{"vhd", append(bytes.Clone(disk), footer...), disk, mustStep(t, OpVHDFixed, fx)})
	return out
}

// recipeFor is a recipe whose one artifact is the case's file, made from a blob of its guest.
func recipeFor(c formatCase, guest []byte) (*Recipe, memBlobs) {
	r := &Recipe{SchemaVersion: SchemaVersion, Blobs: []Blob{{Digest: digestOf(guest), Size: int64(len(guest))}},
		Artifacts: []Artifact{{ID: "x86_64/" + c.name + "/f/disk", Name: "out", Size: int64(len(c.file)), SHA256: hexOf(c.file),
			Steps: []Step{{Op: OpBlob, Blob: digestOf(guest)}, c.step}}}}
	r.DeclareFeatures()
	return r, memBlobs{digestOf(guest): guest}
}

func TestFormatSteps(t *testing.T) {
	for _, c := range formatCases(t) {
		t.Run(c.name, func(t *testing.T) {
			r, blobs := recipeFor(c, c.guest)
			doc, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			r, err = ParseRecipe(doc) // what an image carries
			if err != nil {
				t.Fatal(err)
			}
			e := NewEngine(r, blobs, t.TempDir())
			defer e.Close()
			var out bytes.Buffer
			if err := e.Rehydrate(context.Background(), r.Artifacts[0].ID, &out, nil); err != nil {
				t.Fatal(err)
			}
			// A changed guest byte is an error, not a wrong file; so is a guest one byte
			// short or longer, where the format says how long it is (a VMDK reads as
			// zero-padded, as qemu-img pads a raw file, and need not reach its end).
			changed := bytes.Clone(c.guest)
			i := bytes.IndexFunc(changed, func(r rune) bool { return r != 0 })
			changed[i] ^= 0x20
			bad := [][]byte{changed}
			if c.step.Op != OpVMDKEncode {
				bad = append(bad, c.guest[:len(c.guest)-1], append(bytes.Clone(c.guest), 1))
			}
			for _, g := range bad {
				r, blobs := recipeFor(c, g)
				e := NewEngine(r, blobs, t.TempDir())
				err := e.Rehydrate(context.Background(), r.Artifacts[0].ID, io.Discard, nil)
				e.Close()
				if err == nil {
					t.Fatalf("a %d-byte input for a %d-byte guest was accepted", len(g), len(c.guest))
				}
			}
		})
	}
}

// A rehydrator built without cgo refuses vmdk-encode with a message that says what to use.
func TestVMDKEncodeWithoutCgo(t *testing.T) {
	defer func(f func() error) { vmdkCanEncode = f }(vmdkCanEncode)
	vmdkCanEncode = func() error { return vmdk.ErrUnsupported }
	c := formatCases(t)[0]
	r, blobs := recipeFor(c, c.guest)
	e := NewEngine(r, blobs, t.TempDir())
	defer e.Close()
	var out bytes.Buffer
	err := e.Rehydrate(context.Background(), r.Artifacts[0].ID, &out, nil)
	if !errors.Is(err, vmdk.ErrUnsupported) || !strings.Contains(err.Error(), "CGO_ENABLED=0") || out.Len() != 0 {
		t.Fatalf("%v (%d bytes written), want a refusal naming the cgo build", err, out.Len())
	}
}

func TestFormatParamsRejected(t *testing.T) {
	cases := formatCases(t)
	edits := []struct {
		name string
		step func() Step
		want string
	}{
		{"vmdk junk", func() Step { return Step{Op: OpVMDKEncode, Params: []byte(`{"header":7}`)} }, "vmdk-encode params"},
		{"vmdk unknown field", func() Step {
			s := cases[0].step
			s.Params = append([]byte(`{"extra":1,`), s.Params[1:]...)
			return s
		}, "unknown field"},
		{"ova without disk", func() Step {
			var p OVAParams
			json.Unmarshal(cases[1].step.Params, &p)
			p.Disk = "other.vmdk"
			return mustStep(t, OpOVA, &p)
		}, "no member"},
		{"ova missing file", func() Step {
			var p OVAParams
			json.Unmarshal(cases[1].step.Params, &p)
			p.Files = nil
			return mustStep(t, OpOVA, &p)
		}, "has no contents"},
		{"vhd bad footer", func() Step { return mustStep(t, OpVHDFixed, &vhd.Fixed{DataSize: 512, Footer: make([]byte, 512)}) }, "not a VHD"},
		{"tar bad header", func() Step { return mustStep(t, OpSparseTar, &sparsetar.Layout{Header: make([]byte, 512)}) }, "gnu-sparse-tar params"},
	}
	for _, ed := range edits {
		c := cases[0]
		c.step = ed.step()
		r, _ := recipeFor(c, c.guest)
		doc, _ := json.Marshal(r)
		_, err := ParseRecipe(doc)
		if !errors.Is(err, ErrBadRecipe) || !strings.Contains(err.Error(), ed.want) {
			t.Errorf("%s: %v, want an invalid recipe mentioning %q", ed.name, err, ed.want)
		}
	}
}

// FuzzFormatStep runs every format step on fuzzed parameters and inputs: a step must produce
// its file or fail, never panic or hang.
func FuzzFormatStep(f *testing.F) {
	ops := []string{OpVMDKEncode, OpOVA, OpSparseTar, OpVHDFixed, OpVHDXDynamic}
	vx, _ := vhdxCase(f)
	for _, c := range append(formatCases(f), vx) {
		for i, op := range ops {
			if op == c.step.Op {
				f.Add(uint8(i), []byte(c.step.Params), c.guest)
			}
		}
	}
	f.Fuzz(func(t *testing.T, op uint8, params, guest []byte) {
		s := Step{Op: ops[int(op)%len(ops)], Params: params}
		if _, _, err := s.decode(); err != nil {
			return
		}
		if v, ok := sizeOf(s); !ok || v > 64<<20 {
			return // valid, but too large to write here
		}
		r := &Recipe{SchemaVersion: SchemaVersion, Blobs: []Blob{{Digest: digestOf(guest), Size: int64(len(guest))}}}
		Run(context.Background(), memBlobs{digestOf(guest): guest}, r.Blobs, []Step{{Op: OpBlob, Blob: digestOf(guest)}, s}, io.Discard)
	})
}

// sizeOf is the size of what a valid format step writes.
func sizeOf(s Step) (int64, bool) {
	_, p, err := s.decode()
	if err != nil {
		return 0, false
	}
	switch p := p.(type) {
	case *vmdk.Params:
		return p.FileSize, true
	case *OVAParams:
		return p.Size(), true
	case *vhd.Fixed:
		return p.Size(), true
	case *sparsetar.Layout:
		a, err := p.Parse()
		return a.Size(), err == nil
	case *vhdxParams:
		return p.Size(), true
	}
	return 0, false
}

package dehydrate

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/internal/diskview"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/vmdk"
)

// formatDisks makes, with the real tools, a qcow2 baseline and the same disk with a small edit
// (a platform id stamp) in every format that has a recipe step.
func formatDisks(t *testing.T) (base string, targets map[string]string) {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(11))
	raw := make([]byte, 24<<20)
	for i := 0; i < 40; i++ {
		off := rng.Intn(len(raw) - 100000)
		rng.Read(raw[off : off+rng.Intn(100000)])
	}
	copy(raw[1<<20:], "options root=UUID=x ignition.platform.id=qemu\n")
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	baseRaw := write("base.raw", raw)
	base = filepath.Join(dir, "qemu.qcow2")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", baseRaw, base)
	stamped := bytes.Clone(raw)
	copy(stamped[1<<20:], "options root=UUID=x ignition.platform.id=aws\n\n")
	os.MkdirAll(filepath.Join(dir, "gcp"), 0o755)
	// disk.raw with holes where it is zero, as the fixture builder's (tar --sparse sees them).
	src := filepath.Join(dir, "gcp/disk.raw")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(stamped); off += 4096 {
		if b := stamped[off : off+4096]; !bytes.Equal(b, make([]byte, 4096)) {
			f.WriteAt(b, int64(off))
		}
	}
	f.Truncate(int64(len(stamped)))
	f.Close()

	targets = map[string]string{}
	targets["vmdk"] = filepath.Join(dir, "aws.vmdk")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "adapter_type=lsilogic,subformat=streamOptimized,compat6", src, targets["vmdk"])
	targets["vhd"] = filepath.Join(dir, "azure.vhd")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", src, targets["vhd"])
	targets["vhdx"] = filepath.Join(dir, "hyperv.vhdx")
	run(t, "qemu-img", "convert", "-f", "raw", "-O", "vhdx", src, targets["vhdx"])
	targets["gnu-sparse-tar"] = filepath.Join(dir, "gcp.tar")
	run(t, "tar", "--format=oldgnu", "--sparse", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@1700000000", "-C", filepath.Join(dir, "gcp"), "-cf", targets["gnu-sparse-tar"], "disk.raw")
	if b, _ := os.ReadFile(targets["gnu-sparse-tar"]); len(b) < 512 || b[156] != 'S' {
		t.Fatal("tar did not make a sparse member")
	}
	ovaDir := filepath.Join(dir, "ova")
	os.MkdirAll(ovaDir, 0o755)
	vm, _ := os.ReadFile(targets["vmdk"])
	os.WriteFile(filepath.Join(ovaDir, "disk.vmdk"), vm, 0o644)
	os.WriteFile(filepath.Join(ovaDir, "coreos.ovf"), []byte(fmt.Sprintf("<Envelope><File ovf:href=\"disk.vmdk\" ovf:size=\"%d\"/></Envelope>\n", len(vm))), 0o644)
	targets["ova"] = filepath.Join(dir, "vmware.ova")
	run(t, "tar", "--format=ustar", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@1700000000", "-C", ovaDir, "-cf", targets["ova"], "coreos.ovf", "disk.vmdk")

	// A VMDK one of whose grains does not come out of the encoder as it is: a stray byte in
	// the padding of its slot (readers ignore it, Encode writes zeros there).
	odd := bytes.Clone(vm)
	img, err := vmdk.Open(bytes.NewReader(odd), int64(len(odd)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := img.Params()
	if err != nil {
		t.Fatal(err)
	}
	sector := int64(p.Header.Overhead)
	patched := false
	p.Grains.All(func(g vmdk.Grain) error {
		slot := (int64(g.Size) + 12 + 511) / 512
		if !patched && (int64(g.Size)+12)%512 != 0 {
			odd[(sector+slot)*512-1] = 0x5a
			patched = true
		}
		sector += slot
		return nil
	})
	targets["vmdk leftover"] = write("odd.vmdk", odd)

	// A VMDK one of whose grains was deflated by another zlib (Go's, at some level whose output
	// fits qemu's slot): the encoder's grain differs, and vmdk-grains rebuilds it with reflate.
	foreign := bytes.Clone(vm)
	sector = int64(p.Header.Overhead)
	done := false
	p.Grains.All(func(g vmdk.Grain) error {
		slot := (int64(g.Size) + 12 + 511) / 512
		off := sector * 512
		sector += slot
		if done {
			return nil
		}
		data := make([]byte, 64<<10)
		img.ReadAt(data, int64(g.Index)*64<<10)
		for level := 1; level <= 9 && !done; level++ {
			var z bytes.Buffer
			zw, _ := zlib.NewWriterLevel(&z, level)
			zw.Write(data)
			zw.Close()
			if room := slot*512 - 12; int64(z.Len()) <= room && uint32(z.Len()) != g.Size {
				binary.LittleEndian.PutUint32(foreign[off+8:], uint32(z.Len()))
				clear(foreign[off+12 : off+12+room])
				copy(foreign[off+12:], z.Bytes())
				foreignSlot = slot * 512
				done = true
			}
		}
		return nil
	})
	if !done {
		t.Fatal("no grain where Go's deflate fits qemu's slot")
	}
	targets["vmdk foreign grain"] = write("foreign.vmdk", foreign)
	return base, targets
}

// foreignSlot is the size of the slot of the grain formatDisks re-deflated.
var foreignSlot int64

func sumFile(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

func TestFormatCandidates(t *testing.T) {
	base, targets := formatDisks(t)
	baseDigest := "sha256:" + sumFile(t, base)
	for name, target := range targets {
		t.Run(name, func(t *testing.T) {
			want := sumFile(t, target)
			blobDir := t.TempDir()
			c, whole, note, err := formatCandidate(context.Background(), base, baseDigest, target, want, blobDir, delta.Options{})
			if err != nil || whole || c == nil {
				t.Fatalf("formatCandidate: %v whole=%v %q", err, whole, note)
			}
			op := map[string]string{"vmdk": "vmdk-encode", "ova": "ova", "vhd": "vhd-fixed", "vhdx": "vhdx-dynamic", "gnu-sparse-tar": "gnu-sparse-tar"}[strings.Fields(name)[0]]
			if strings.Contains(name, "foreign") {
				op = "vmdk-grains"
			}
			method := c.method(func(id string) string { return id })
			if !c.onBaseline || !strings.HasPrefix(method, "qcow2-decode+delta+") || !strings.Contains(method, op) {
				t.Fatalf("method %q, want qcow2-decode+delta+...%s", method, op)
			}
			more := c.blobs[1:]
			if strings.Contains(name, "foreign") {
				// The grain's reflate data, in vmdk-grains' blob, and no leftover delta.
				if !strings.Contains(method, "vmdk-grains") || len(more) != 1 || more[0].size > foreignSlot/4 || strings.HasSuffix(method, "+delta") {
					t.Fatalf("method %q, %d more blobs, note %q: want vmdk-grains and its small blob", method, len(more), note)
				}
				more = nil
			}
			if leftover := strings.HasSuffix(name, "leftover"); leftover != (len(more) == 1) || leftover != strings.Contains(note, "of vmdk differ after re-encoding") || leftover != strings.HasSuffix(method, "+delta") {
				t.Fatalf("leftover deltas %d, note %q, method %q", len(more), note, method)
			}
			if st, _ := os.Stat(target); c.stored() > 64<<10 || c.stored() > st.Size()/20 {
				t.Fatalf("candidate stores %d bytes for a %d-byte %s", c.stored(), st.Size(), name)
			}
			blobs := LocalBlobs{baseDigest: base}
			for _, b := range c.blobs {
				blobs[b.digest] = b.path
			}
			h := sha256.New()
			if _, err := rehydrate.Run(context.Background(), blobs, nil, append([]rehydrate.Step{{Op: rehydrate.OpBlob, Blob: baseDigest}}, c.steps...), h); err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(h.Sum(nil)) != want {
				t.Fatalf("the %s steps do not rebuild the target", method)
			}
		})
	}
}

// A shipped VMDK whose grain table lies, or whose grain is corrupt, is stored whole, with a
// message that names where.
func TestFormatCandidateCorruptVMDK(t *testing.T) {
	base, targets := formatDisks(t)
	b, _ := os.ReadFile(targets["vmdk"])
	img, err := vmdk.Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := img.Params()
	var first vmdk.Grain
	p.Grains.All(func(g vmdk.Grain) error { first = g; return errors.New("stop") })
	// Point the first grain's table entry at the second grain (the marker then names another LBA).
	// qemu's first grain tables follow their directories (one sector each here), in both copies.
	for _, dir := range []uint64{p.Header.GDOffset, p.Header.RGDOffset} {
		entry := int64(dir+1)*512 + int64(first.Index)*4
		next := uint32(p.Header.Overhead) + uint32((first.Size+12+511)/512)
		b[entry], b[entry+1], b[entry+2], b[entry+3] = byte(next), byte(next>>8), byte(next>>16), byte(next>>24)
	}
	// And, in another copy, a flipped byte inside the first grain's deflate stream.
	flipped, _ := os.ReadFile(targets["vmdk"])
	flipped[int64(p.Header.Overhead)*512+12+int64(first.Size)/2] ^= 0x55
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{{"lying grain table", b, "at sector 0x"}, {"corrupted grain", flipped, "at offset 0x"}} {
		bad := filepath.Join(t.TempDir(), "bad.vmdk")
		os.WriteFile(bad, c.b, 0o644)
		cand, whole, note, err := formatCandidate(context.Background(), base, "sha256:x", bad, "x", t.TempDir(), delta.Options{})
		if err != nil || cand != nil || !whole || !strings.Contains(note, c.want) {
			t.Errorf("%s: %v %v %v %q, want whole with a note saying %q", c.name, cand, whole, err, note, c.want)
		}
	}
}

// Without cgo (no zlib), VMDKs and OVAs are stored whole, with a message that says why.
func TestFormatCandidateWithoutCgo(t *testing.T) {
	base, targets := formatDisks(t)
	defer func(f func() error) { diskview.CanEncodeVMDK = f }(diskview.CanEncodeVMDK)
	diskview.CanEncodeVMDK = func() error { return errors.New("no zlib") }
	for _, name := range []string{"vmdk", "ova"} {
		c, whole, note, err := formatCandidate(context.Background(), base, "sha256:x", targets[name], "x", t.TempDir(), delta.Options{})
		if err != nil || c != nil || !whole || !strings.Contains(note, "cgo") {
			t.Fatalf("%s without cgo: %v %v %v %q, want whole with a note about cgo", name, c, whole, err, note)
		}
	}
}

// A shipped file with a format's signature whose structure is damaged (here a VHD footer whose
// checksum does not match) is stored whole, with a message that names its format.
func TestFormatCandidateDamagedFooter(t *testing.T) {
	base, targets := formatDisks(t)
	b, _ := os.ReadFile(targets["vhd"])
	b[len(b)-512+40] ^= 1
	bad := filepath.Join(t.TempDir(), "bad.vhd")
	os.WriteFile(bad, b, 0o644)
	c, whole, note, err := formatCandidate(context.Background(), base, "sha256:x", bad, "x", t.TempDir(), delta.Options{})
	if err != nil || c != nil || !whole || !strings.Contains(note, "cannot open it as vhd") || !strings.Contains(note, "checksum") {
		t.Fatalf("damaged VHD footer: %v %v %v %q, want whole with a note naming the VHD footer", c, whole, err, note)
	}
}

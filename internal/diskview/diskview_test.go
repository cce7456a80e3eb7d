package diskview

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/sparsetar"
	"github.com/rehydrator/rehydrator/vhd"
	"github.com/rehydrator/rehydrator/vhdx"
	"github.com/rehydrator/rehydrator/vmdk"
)

func gunzip(t *testing.T, p string) []byte {
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

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if o, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, o)
	}
}

// disks makes the same 1 MiB guest disk in every format of the table with the real tools
// (qemu-img, tar), and the raw disk itself.
func disks(t *testing.T) (raw []byte, files map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	raw = bytes.Repeat([]byte("guest bytes\x00\x00\x00\x00"), 1<<16)
	clear(raw[256<<10 : 768<<10]) // a hole, for the sparse tar
	rawPath := filepath.Join(dir, "disk.raw")
	f, err := os.Create(rawPath)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(raw[:256<<10])
	f.WriteAt(raw[768<<10:], 768<<10)
	f.Close()
	files = map[string][]byte{"raw": raw}
	for name, args := range map[string][]string{
		"qcow2": {"-O", "qcow2"},
		"vmdk":  {"-O", "vmdk", "-o", "subformat=streamOptimized"},
		"vhd":   {"-O", "vpc", "-o", "subformat=fixed,force_size"},
		"vhdx":  {"-O", "vhdx"}, // dynamic, as osbuild makes hyperv's
	} {
		out := filepath.Join(dir, "disk."+name)
		run(t, "qemu-img", append(append([]string{"convert", "-f", "raw"}, args...), rawPath, out)...)
		files[name], _ = os.ReadFile(out)
	}
	ova := filepath.Join(dir, "ova")
	os.Mkdir(ova, 0o755)
	os.WriteFile(filepath.Join(ova, "disk.vmdk"), files["vmdk"], 0o644)
	os.WriteFile(filepath.Join(ova, "coreos.ovf"), []byte(fmt.Sprintf("<Envelope><File ovf:href=\"disk.vmdk\" ovf:size=\"%d\"/></Envelope>\n", len(files["vmdk"]))), 0o644)
	run(t, "tar", "--format=ustar", "-C", ova, "-cf", filepath.Join(dir, "disk.ova"), "coreos.ovf", "disk.vmdk")
	files["ova"], _ = os.ReadFile(filepath.Join(dir, "disk.ova"))
	run(t, "tar", "--format=oldgnu", "--sparse", "-C", dir, "-cf", filepath.Join(dir, "disk.tar"), "disk.raw")
	files["gnu-sparse-tar"], _ = os.ReadFile(filepath.Join(dir, "disk.tar"))
	if b := files["gnu-sparse-tar"]; len(b) < 512 || b[156] != 'S' {
		t.Fatal("tar did not make a sparse member")
	}
	return raw, files
}

// Every format of the table is recognised in files the real tools made, opens as the guest
// bytes, and offers the recipe steps that write it again (qcow2 has its own routes, raw none).
func TestOpen(t *testing.T) {
	raw, files := disks(t)
	steps := map[string][]string{"vmdk": {"vmdk-encode"}, "ova": {"vmdk-encode", "ova"}, "vhd": {"vhd-fixed"}, "vhdx": {"vhdx-dynamic"}, "gnu-sparse-tar": {"gnu-sparse-tar"}}
	if len(files) != len(Formats)+1 {
		t.Fatalf("%d test files for %d formats and raw", len(files), len(Formats))
	}
	for want, b := range files {
		v, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("%s: %v", want, err)
		}
		if v.Format != want || v.Size != int64(len(raw)) {
			t.Fatalf("%s: opened as %s of %d bytes", want, v.Format, v.Size)
		}
		got := make([]byte, v.Size)
		if _, err := v.ReadAt(got, 0); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("%s: guest bytes differ", want)
		}
		if (v.Steps != nil) != (steps[want] != nil) {
			t.Fatalf("%s: steps %v", want, v.Steps != nil)
		}
		if v.Steps == nil {
			continue
		}
		s, err := v.Steps()
		if errors.Is(err, ErrNoEncoder) && vmdk.CanEncode() != nil {
			continue // a build without cgo has no vmdk-encode
		}
		if err != nil {
			t.Fatalf("%s steps: %v", want, err)
		}
		var ops []string
		for _, st := range s {
			ops = append(ops, st.Op)
		}
		if strings.Join(ops, " ") != strings.Join(steps[want], " ") {
			t.Fatalf("%s: steps %v, want %v", want, ops, steps[want])
		}
		// The steps write the very file again from its guest view.
		var out bytes.Buffer
		src := rawBlob{digest: fmt.Sprintf("sha256:%x", sha256.Sum256(got)), b: got}
		if _, err := rehydrate.Run(context.Background(), src, []rehydrate.Blob{{Digest: src.digest, Size: int64(len(got))}},
			append([]rehydrate.Step{{Op: rehydrate.OpBlob, Blob: src.digest}}, s...), &out); err != nil {
			t.Fatalf("%s steps: %v", want, err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("%s: its steps write %d other bytes than the %d-byte file", want, out.Len(), len(b))
		}
	}
	tarball := gunzip(t, "../../sparsetar/testdata/extended.tar.gz")
	if v, err := Open(bytes.NewReader(tarball), int64(len(tarball))); err != nil || v.Format != "gnu-sparse-tar" {
		t.Fatalf("sparse tar: %v %v", v, err)
	}
}

// A file that has a format's signature but is damaged gives that format's error, not a raw
// view.
func TestOpenDamaged(t *testing.T) {
	_, files := disks(t)
	footer := bytes.Clone(files["vhd"])
	footer[len(footer)-512+40] ^= 1 // the original size: the checksum no longer matches
	vhdxHeaders := bytes.Clone(files["vhdx"])
	vhdxHeaders[64<<10+9] ^= 1 // the sequence numbers of both headers: their checksums no longer match
	vhdxHeaders[128<<10+9] ^= 1
	for _, c := range []struct {
		format string
		b      []byte
		want   error
	}{
		{"qcow2", corruptQcow2(files["qcow2"]), qcow2.ErrCorrupt},
		{"vmdk", files["vmdk"][:600], vmdk.ErrCorrupt},
		{"vhd", footer, vhd.ErrCorrupt},
		{"vhdx", files["vhdx"][:600], vhdx.ErrCorrupt},
		{"vhdx", vhdxHeaders, vhdx.ErrCorrupt},
		{"ova", files["ova"][:3000], vmdk.ErrNotOVA},
		{"gnu-sparse-tar", files["gnu-sparse-tar"][:1024], sparsetar.ErrCorrupt},
	} {
		if f := Sniff(bytes.NewReader(c.b), int64(len(c.b))); f == nil || f.Name != c.format {
			t.Errorf("damaged %s: claimed by %v", c.format, f)
			continue
		}
		v, err := Open(bytes.NewReader(c.b), int64(len(c.b)))
		if !errors.Is(err, c.want) {
			t.Errorf("damaged %s: %v, %v; want an error wrapping %q", c.format, v, err, c.want)
		}
	}
}

// rawBlob serves one blob from memory.
type rawBlob struct {
	digest string
	b      []byte
}

func (r rawBlob) OpenBlob(_ context.Context, d string) (io.ReadCloser, error) {
	if d != r.digest {
		return nil, fmt.Errorf("no blob %s", d)
	}
	return io.NopCloser(bytes.NewReader(r.b)), nil
}

// corruptQcow2 points the qcow2's L1 table past the end of the file.
func corruptQcow2(b []byte) []byte {
	b = bytes.Clone(b)
	copy(b[40:48], []byte{0, 0, 0, 0x7f, 0, 0, 0, 0})
	return b
}

// Each format's Sniff claims its own files and no other format's (raw: none), so the order
// of the table only matters for files no real tool makes.
func TestSniffClaimsOnlyItsOwn(t *testing.T) {
	_, files := disks(t)
	for _, f := range Formats {
		for name, b := range files {
			if got := f.Sniff(bytes.NewReader(b), int64(len(b))); got != (name == f.Name) {
				t.Errorf("%s.Sniff(%s file) = %v", f.Name, name, got)
			}
		}
	}
	for _, n := range []int64{0, 3, 511} {
		if f := Sniff(bytes.NewReader(make([]byte, n)), n); f != nil {
			t.Errorf("%d zero bytes claimed by %s", n, f.Name)
		}
	}
}

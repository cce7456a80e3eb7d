package vmdk

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testOVF = `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="disk.vmdk" ovf:id="file1"/></References>
</Envelope>
`

// ovaMakers build an OVA of the files in dir (names in order) into out.
var ovaMakers = []struct {
	name string
	tool string
	make func(dir, out string, names []string) error
}{
	{"gnu-tar", "tar", func(dir, out string, names []string) error {
		return exec.Command("tar", append([]string{"-C", dir, "-cf", out}, names...)...).Run()
	}},
	{"gnu-tar-ustar", "tar", func(dir, out string, names []string) error {
		return exec.Command("tar", append([]string{"--format=ustar", "-C", dir, "-cf", out}, names...)...).Run()
	}},
	{"python-tarfile-pax", "python3", pythonTar("PAX_FORMAT")},
	{"python-tarfile-ustar", "python3", pythonTar("USTAR_FORMAT")},
	{"go-archive-tar", "", func(dir, out string, names []string) error {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, n := range names {
			b, err := os.ReadFile(filepath.Join(dir, n))
			if err != nil {
				return err
			}
			// A long name needs a PAX header.
			h := &tar.Header{Name: n + strings.Repeat("-long", 30), Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			tw.Write(b)
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return os.WriteFile(out, buf.Bytes(), 0o644)
	}},
}

func pythonTar(format string) func(dir, out string, names []string) error {
	return func(dir, out string, names []string) error {
		script := "import sys, tarfile\n" +
			"with tarfile.open(sys.argv[1], 'w', format=tarfile." + format + ") as t:\n" +
			"    for n in sys.argv[3:]: t.add(sys.argv[2] + '/' + n, arcname=n)\n"
		return exec.Command("python3", append([]string{"-c", script, out, dir}, names...)...).Run()
	}
}

func TestOVARoundTrip(t *testing.T) {
	vmdkPath := qemuVMDK(t, disks[0], variants[0].opts)
	dir := t.TempDir()
	vb := readFile(t, vmdkPath)
	if err := os.WriteFile(filepath.Join(dir, "disk.vmdk"), vb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "coreos.ovf"), []byte(testOVF), 0o644); err != nil {
		t.Fatal(err)
	}
	names := []string{"coreos.ovf", "disk.vmdk"}
	for _, mk := range ovaMakers {
		t.Run(mk.name, func(t *testing.T) {
			if mk.tool != "" {
				if _, err := exec.LookPath(mk.tool); err != nil {
					t.Skipf("%s not installed", mk.tool)
				}
			}
			out := filepath.Join(t.TempDir(), "x.ova")
			if err := mk.make(dir, out, names); err != nil {
				t.Fatal(err)
			}
			orig := readFile(t, out)
			r := bytes.NewReader(orig)
			o, err := ReadOVA(r, int64(len(orig)))
			if err != nil {
				t.Fatal(err)
			}
			if len(o.Members) != 2 || !strings.HasPrefix(o.Members[0].Name, "coreos.ovf") {
				t.Fatalf("members %+v", o.Members)
			}
			m := &o.Members[1]
			if !bytes.Equal(readAll(t, m.Open(r)), vb) {
				t.Fatal("vmdk member contents differ")
			}
			img, err := Open(m.Open(r), m.Size)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := guestSHA(img); err != nil {
				t.Fatal(err)
			}
			if o.Find(m.Name) != m || o.Find("nope") != nil {
				t.Error("Find")
			}
			var buf bytes.Buffer
			err = WriteOVA(&buf, o, func(m *OVAMember) (io.Reader, error) { return m.Open(r), nil })
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), orig) {
				t.Fatalf("WriteOVA: %d bytes, original %d, first difference at %#x", buf.Len(), len(orig), firstDiff(buf.Bytes(), orig))
			}
			// Short contents are an error, not a shorter archive.
			err = WriteOVA(io.Discard, o, func(m *OVAMember) (io.Reader, error) { return io.LimitReader(m.Open(r), m.Size-1), nil })
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("short member: %v", err)
			}
		})
	}
}

func TestReadOVANotTar(t *testing.T) {
	b := bytes.Repeat([]byte("not a tar "), 200)
	if _, err := ReadOVA(bytes.NewReader(b), int64(len(b))); !errors.Is(err, ErrNotOVA) {
		t.Fatalf("ReadOVA: %v", err)
	}
}

func readAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package zipmember

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// content makes a file that deflates somewhat: random runs and text.
func content(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		if i/4096%3 == 0 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = "hyperv disk "[i%12]
		}
	}
	return b
}

// zipWith runs Info-ZIP's zip in dir as a shell command (for pipes) and
// returns the archive it wrote to out.zip.
func zipWith(t testing.TB, dir, shell string) []byte {
	t.Helper()
	cmd := exec.Command("sh", "-c", shell)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s (Debian: apt-get install zip)", shell, err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "out.zip"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTripInfoZIP(t *testing.T) {
	cases := []struct {
		name, shell string
		method      uint16
		zip64, desc bool
	}{
		// The real hyperv artifact: zip -9j of the VHDX.
		{"zip -9j", "zip -q -9j out.zip sub/disk.vhdx", Deflate, false, false},
		{"zip -0j", "zip -q -0j out.zip sub/disk.vhdx", Store, false, false},
		{"zip -j default level", "zip -q -j out.zip sub/disk.vhdx", Deflate, false, false},
		// From stdin: sizes patched into the local header afterwards.
		{"stdin", "zip -q -9 out.zip - < sub/disk.vhdx", Deflate, false, false},
		// Zip64 extra fields and end records, as zip writes for members over 4 GiB.
		{"zip64", "zip -q -fz -9j out.zip sub/disk.vhdx", Deflate, true, false},
		// To a pipe: a data descriptor after the data.
		{"to a pipe", "zip -q -9j - sub/disk.vhdx | cat > out.zip", Deflate, false, true},
		// (zip -fz to a pipe writes an archive unzip itself rejects: not tested.)
		{"stdin to a pipe", "cat sub/disk.vhdx | zip -q -9 - - | cat > out.zip", Deflate, false, true},
		{"zip64 stored", "zip -q -fz -0j out.zip sub/disk.vhdx", Store, true, false},
		{"comment", "zip -q -9j out.zip sub/disk.vhdx && echo 'a comment' | zip -q -z out.zip", Deflate, false, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, "sub"), 0o755)
			data := content(300<<10+i*4099, uint64(i))
			if err := os.WriteFile(filepath.Join(dir, "sub", "disk.vhdx"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			z := zipWith(t, dir, c.shell)
			a, err := Open(bytes.NewReader(z), int64(len(z)))
			if err != nil {
				t.Fatal(err)
			}
			m := a.Member
			if m.Method != c.method || m.Zip64 != c.zip64 || (m.Flags&flagDescr != 0) != c.desc || m.UncompressedSize != int64(len(data)) {
				t.Fatalf("member %+v", m)
			}
			if m.Name != "disk.vhdx" && m.Name != "-" {
				t.Fatalf("name %q", m.Name)
			}
			got, err := io.ReadAll(a.Reader())
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("contents: %v, equal %v", err, bytes.Equal(got, data))
			}
			// archive/zip agrees on where the data is.
			zr, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
			if err != nil {
				t.Fatal(err)
			}
			if off, _ := zr.File[0].DataOffset(); off != a.DataOff || int64(zr.File[0].CompressedSize64) != m.CompressedSize {
				t.Fatalf("archive/zip: data at %d (%d bytes), we say %d (%d bytes)", off, zr.File[0].CompressedSize64, a.DataOff, m.CompressedSize)
			}
			l, err := a.Layout()
			if err != nil {
				t.Fatal(err)
			}
			js, _ := json.Marshal(l)
			var l2 Layout
			if err := json.Unmarshal(js, &l2); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d-byte archive, %d bytes of raw data, layout %d+%d bytes", len(z), l2.DataSize, len(l2.Head), len(l2.Tail))
			raw, _ := io.ReadAll(a.Raw())
			var out bytes.Buffer
			if err := Write(&out, bytes.NewReader(raw), &l2); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), z) {
				t.Fatal("Write did not reproduce zip's archive")
			}
			if c.method == Store {
				bad := bytes.Clone(raw)
				bad[10]++
				if err := Write(io.Discard, bytes.NewReader(bad), &l2); !errors.Is(err, ErrFormat) {
					t.Fatalf("stored data with a wrong CRC: %v", err)
				}
			}
			if err := Write(io.Discard, bytes.NewReader(raw[1:]), &l2); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("short data: %v", err)
			}
			if err := Write(io.Discard, io.MultiReader(bytes.NewReader(raw), bytes.NewReader([]byte{1})), &l2); err == nil {
				t.Fatal("long data accepted")
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"a", "b"} {
		os.WriteFile(filepath.Join(dir, n), content(1000, 1), 0o644)
	}
	two := zipWith(t, dir, "zip -q -9j out.zip a b")
	if _, err := Open(bytes.NewReader(two), int64(len(two))); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("two members: %v", err)
	}
	os.Remove(filepath.Join(dir, "out.zip"))
	one := zipWith(t, dir, "zip -q -9j out.zip a")
	enc := zipWith(t, t.TempDir(), "echo secret > f && zip -q -P pw out.zip f")
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrNotZip},
		{"not zip", []byte("hello, this is not a zip archive at all"), ErrNotZip},
		{"truncated", one[:len(one)-30], ErrNotZip},
		{"encrypted", enc, ErrUnsupported},
		{"bad local header", func() []byte { b := bytes.Clone(one); b[0] = 'X'; return b }(), ErrFormat},
		{"data into directory", func() []byte { b := bytes.Clone(one); b[len(b)-22-len("a")-46+20] = 0xf0; return b }(), ErrFormat},
	}
	for _, c := range cases {
		_, err := Open(bytes.NewReader(c.b), int64(len(c.b)))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	if !Sniff(one) || Sniff(enc[1:]) {
		t.Fatal("Sniff")
	}
}

// FuzzOpen opens arbitrary bytes: never a panic. When Layout accepts them,
// Write must give them back from the raw data.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	os.WriteFile(filepath.Join(dir, "d"), content(3000, 2), 0o644)
	for _, sh := range []string{"zip -q -9j out.zip d", "zip -q -0j out.zip d", "zip -q -9 - d | cat > out.zip", "zip -q -0 out.zip - < d"} {
		f.Add(zipWith(f, dir, "rm -f out.zip && "+sh))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(a.Reader(), 1<<20))
		l, err := a.Layout()
		if err != nil {
			return
		}
		if err := l.Validate(); err != nil {
			t.Fatalf("Layout made a layout Validate refuses: %v", err)
		}
		raw, err := io.ReadAll(a.Raw())
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := Write(&out, bytes.NewReader(raw), l); err != nil {
			if a.Member.Method == Store && errors.Is(err, ErrFormat) {
				return // a stored member whose CRC the fuzzer broke
			}
			t.Fatalf("Write: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatal("Write did not give back the archive")
		}
	})
}

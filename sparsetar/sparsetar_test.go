package sparsetar

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gnuTar makes disk.raw of size bytes with data at the given offsets (holes
// elsewhere) and tars it as coreos-assembler makes GCP's image, with the
// real GNU tar.
func gnuTar(t testing.TB, size int64, data map[int64]string) (file, archive []byte) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for off, s := range data {
		if _, err := f.WriteAt([]byte(s), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out := filepath.Join(dir, "disk.tar")
	cmd := exec.Command("tar", "--format=oldgnu", "--sparse", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@1700000000", "-C", dir, "-cf", out, "disk.raw")
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, o)
	}
	file, _ = os.ReadFile(p)
	archive, _ = os.ReadFile(out)
	return file, archive
}

func manySegments(n int) map[int64]string {
	m := map[int64]string{}
	for i := 0; i < n; i++ {
		m[int64(i)*40960+int64(i%7)*512] = strings.Repeat(string(rune('a'+i%26)), 100+i)
	}
	return m
}

func TestRoundTripGNUTar(t *testing.T) {
	cases := []struct {
		name string
		size int64
		data map[int64]string
	}{
		{"few", 10 << 20, map[int64]string{100000: "hello", 3000000: strings.Repeat("x", 70000), 10<<20 - 3: "end"}},
		{"extended map", 4 << 20, manySegments(60)},
		{"ends in a hole", 8 << 20, map[int64]string{0: "start"}},
		{"empty", 1 << 20, nil},
		{"dense", 8192, map[int64]string{0: strings.Repeat("y", 8192)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file, ar := gnuTar(t, c.size, c.data)
			a, err := Open(bytes.NewReader(ar), int64(len(ar)))
			if err != nil {
				t.Fatal(err)
			}
			if a.Name != "disk.raw" || a.RealSize != c.size || a.Size() != int64(len(ar)) {
				t.Fatalf("name %q real size %d size %d (archive %d)", a.Name, a.RealSize, a.Size(), len(ar))
			}
			got := make([]byte, a.RealSize)
			if _, err := a.File(bytes.NewReader(ar)).ReadAt(got, 0); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if !bytes.Equal(got, file) {
				t.Fatal("File differs from the archived file")
			}
			// Reads at odd offsets and lengths agree too.
			v := a.File(bytes.NewReader(ar))
			for off := int64(0); off < a.RealSize; off += 777777 {
				b := make([]byte, 123457)
				n, _ := v.ReadAt(b, off)
				if !bytes.Equal(b[:n], file[off:off+int64(n)]) {
					t.Fatalf("ReadAt(%d) differs", off)
				}
			}
			var out bytes.Buffer
			if err := Write(&out, bytes.NewReader(file), &a.Layout); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), ar) {
				t.Fatal("Write did not reproduce GNU tar's archive")
			}
			if err := Write(io.Discard, bytes.NewReader(file[:len(file)-1]), &a.Layout); err == nil {
				t.Fatal("a short file was accepted")
			}
		})
	}
}

func TestCorrupt(t *testing.T) {
	_, ar := gnuTar(t, 4<<20, manySegments(30))
	flip := func(off int, v byte) []byte {
		b := bytes.Clone(ar)
		b[off] = v
		return b
	}
	resum := func(b []byte, blk int) []byte {
		h := b[blk*512 : blk*512+512]
		copy(h[offChksum:offChksum+8], "        ")
		var u int64
		for _, c := range h {
			u += int64(c)
		}
		copy(h[offChksum:], []byte(strings.Repeat("0", 6-len(octal(u)))+octal(u)+"\x00 "))
		return b
	}
	cases := []struct {
		name string
		b    []byte
		want error
		text string
	}{
		{"bad checksum", flip(10, 'x'), ErrNotTar, "offset 0x0"},
		{"lying size", resum(flip(offSize+3, '7'), 0), ErrCorrupt, "header says"},
		{"map past the file", resum(flip(512+5, '7'), 0), ErrCorrupt, "entry"},
		{"truncated", ar[:len(ar)/3], ErrCorrupt, "run past the end"},
		{"more than a trailer", append(bytes.Clone(ar), bytes.Repeat([]byte{1}, maxHeader+1)...), ErrUnsupported, "second member"},
		{"empty", make([]byte, 1024), ErrNotTar, "empty"},
	}
	for _, c := range cases {
		_, err := Open(bytes.NewReader(c.b), int64(len(c.b)))
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: %v, want %v mentioning %q", c.name, err, c.want, c.text)
		}
	}
}

func octal(v int64) string { return strconvOctal(v) }

// seeds are small GNU tar archives kept gzipped in testdata.
func seeds(t testing.TB) [][]byte {
	paths, _ := filepath.Glob("testdata/*.tar.gz")
	if len(paths) == 0 {
		t.Fatal("no seeds in testdata")
	}
	var out [][]byte
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func FuzzOpen(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil || a.RealSize > 8<<20 {
			return // a huge file of holes is valid, but too slow to rewrite here
		}
		file, err := io.ReadAll(io.NewSectionReader(a.File(bytes.NewReader(b)), 0, a.RealSize))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := Write(&out, bytes.NewReader(file), &a.Layout); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatal("an archive Open accepts is not rewritten byte for byte")
		}
	})
}

func strconvOctal(v int64) string {
	s := ""
	for ; v > 0; v /= 8 {
		s = string(rune('0'+v%8)) + s
	}
	return s
}

package vmdk

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The seeds in testdata/seeds are tiny images made by qemu-img 7.2 and
// gzipped (a streamOptimized image holds 64 KiB of mostly zero metadata):
//
//	stream-lsilogic-compat6: 100 KiB + 300 bytes of text, noise and a tail,
//	  -o adapter_type=lsilogic,subformat=streamOptimized,compat6
//	stream-ide: 5000 random bytes, -o adapter_type=ide,subformat=streamOptimized
//	monolithicSparse: 200 KiB with 2000 bytes of text, -o adapter_type=lsilogic
func seeds(t testing.TB) [][]byte {
	t.Helper()
	paths, err := filepath.Glob("testdata/seeds/*.vmdk.gz")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no seeds: %v", err)
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
		img, err := Open(bytes.NewReader(s), int64(len(s)))
		if err != nil {
			f.Fatal(err)
		}
		p, err := img.Params()
		if err != nil {
			f.Fatal(err)
		}
		if p.Layout != LayoutQemu {
			continue
		}
		f.Add(toFooterLayout(f, s))
		// Lying tables and broken grains.
		ss := slots(f, p)
		b := bytes.Clone(s)
		binary.LittleEndian.PutUint32(b[gteOffset(b, 0):], 0x7fffffff)
		f.Add(b)
		b = bytes.Clone(s)
		b[ss[0].off+grainMark+3] ^= 0x10
		f.Add(b)
		f.Add(s[:ss[0].off+20])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := Open(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		// Read the start of the guest view and its last bytes; a hostile
		// header may claim a huge capacity.
		buf := make([]byte, 64<<10)
		for off := int64(0); off < min(img.Size(), 2<<20); off += int64(len(buf)) {
			if _, err := img.ReadAt(buf, off); err != nil && err != io.EOF {
				break
			}
		}
		img.ReadAt(buf[:1000], img.Size()-500)
		p, err := img.Params()
		if err != nil || p.Layout != LayoutQemu {
			return
		}
		// Every grain the Params list reads (or fails) without panicking.
		n := 0
		p.Grains.All(func(g Grain) error {
			img.ReadAt(buf[:10], int64(g.Index*p.Header.GrainSize)*SectorSize)
			n++
			if n > 1000 {
				return io.EOF
			}
			return nil
		})
	})
}

// The committed seeds stay small and still read as qemu-img wrote them.
func TestSeeds(t *testing.T) {
	paths, _ := filepath.Glob("testdata/seeds/*")
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil || st.Size() >= 64<<10 {
			t.Errorf("seed %s: %v, %d bytes (want < 64 KiB)", p, err, st.Size())
		}
	}
	for _, s := range seeds(t) {
		img := openBytes(t, s)
		if err := readGuest(img); err != nil {
			t.Error(err)
		}
	}
}

func FuzzReadOVA(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "a.ovf", Mode: 0o644, Size: 5})
	tw.Write([]byte("<ovf>"))
	tw.WriteHeader(&tar.Header{Name: strings.Repeat("long/", 30) + "disk.vmdk", Mode: 0o644, Size: 700, Format: tar.FormatPAX})
	tw.Write(make([]byte, 700))
	tw.Close()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		o, err := ReadOVA(r, int64(len(b)))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteOVA(&out, o, func(m *OVAMember) (io.Reader, error) { return m.Open(r), nil }); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("WriteOVA does not reproduce the archive (first difference at %#x)", firstDiff(out.Bytes(), b))
		}
	})
}

package vmdk

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

func TestGuestMatchesQemu(t *testing.T) {
	all := append(variants[:len(variants):len(variants)], struct{ name, opts string }{"monolithicSparse", "adapter_type=lsilogic"})
	for _, v := range all {
		for _, d := range disks {
			t.Run(v.name+"/"+d.name, func(t *testing.T) {
				path := qemuVMDK(t, d, v.opts)
				b := readFile(t, path)
				img := openBytes(t, b)
				got, err := guestSHA(img)
				if err != nil {
					t.Fatal(err)
				}
				if want := qemuGuestSHA(t, path); got != want {
					t.Fatalf("guest view SHA-256 %x, qemu-img says %x", got, want)
				}
				if want := (d.size + 511) / 512 * 512; img.Size() != want {
					t.Errorf("Size %d, want %d", img.Size(), want)
				}
				if v.name == "monolithicSparse" {
					if img.Compressed() {
						t.Error("monolithicSparse reads as compressed")
					}
					p, err := img.Params()
					if err != nil {
						t.Fatal(err)
					}
					if p.Layout != "" || p.LayoutNote == "" {
						t.Errorf("monolithicSparse: layout %q note %q, want a note", p.Layout, p.LayoutNote)
					}
				}
			})
		}
	}
}

// Random small reads at odd offsets agree with the raw disk.
func TestReadAtRandom(t *testing.T) {
	d := disks[0]
	img := openBytes(t, readFile(t, qemuVMDK(t, d, variants[0].opts)))
	raw := readFile(t, rawDisk(t, d))
	raw = append(raw, make([]byte, img.Size()-int64(len(raw)))...)
	rng := rand.New(rand.NewPCG(7, 7))
	for range 2000 {
		off := rng.Int64N(img.Size() + 100)
		n := rng.IntN(200000)
		got := make([]byte, n)
		k, err := img.ReadAt(got, off)
		want := []byte{}
		if off < int64(len(raw)) {
			want = raw[off:min(off+int64(n), int64(len(raw)))]
		}
		if k != len(want) || !bytes.Equal(got[:k], want) {
			t.Fatalf("ReadAt(%d bytes, %d) = %d bytes, want %d, or data differs", n, off, k, len(want))
		}
		if k < n && err != io.EOF {
			t.Fatalf("short ReadAt at %d: err %v, want io.EOF", off, err)
		}
		if k == n && err != nil {
			t.Fatalf("ReadAt at %d: %v", off, err)
		}
	}
}

func TestParams(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			img := openBytes(t, readFile(t, qemuVMDK(t, disks[1], v.opts)))
			p, err := img.Params()
			if err != nil {
				t.Fatal(err)
			}
			if p.Layout != LayoutQemu {
				t.Fatalf("layout %q (%s), want %q", p.Layout, p.LayoutNote, LayoutQemu)
			}
			h := p.Header
			if h.Version != 3 || h.Flags != FlagNLDetect|FlagRGD|FlagCompressed|FlagMarkers ||
				h.GrainSize != 128 || h.NumGTEsPerGT != 512 || h.CompressAlgorithm != CompressDeflate ||
				h.DescriptorOffset != 1 || h.DescriptorSize != 20 || h.Overhead != 128 {
				t.Errorf("header %+v", h)
			}
			desc := string(p.Descriptor)
			for _, s := range []string{"CID=", `createType="streamOptimized"`, "ddb.adapterType"} {
				if !strings.Contains(desc, s) {
					t.Errorf("descriptor lacks %q:\n%s", s, desc)
				}
			}
			if p.Deflate != DeflateQemu {
				t.Errorf("deflate %q", p.Deflate)
			}
			n := 0
			if err := p.Grains.All(func(Grain) error { n++; return nil }); err != nil || n == 0 {
				t.Errorf("grain map: %d grains, %v", n, err)
			}
			// Params survive JSON, as in a recipe.
			j, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			var q Params
			if err := json.Unmarshal(j, &q); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(q.Grains, p.Grains) || !bytes.Equal(q.Descriptor, p.Descriptor) || q.Header != p.Header || q.FileSize != p.FileSize {
				t.Error("Params changed through JSON")
			}
		})
	}
}

func TestGrainMap(t *testing.T) {
	want := []Grain{{0, 5}, {1, 70000}, {513, 1}, {1 << 40, 1<<32 - 1}}
	var m GrainMap
	last := int64(-1)
	for _, g := range want {
		m = m.Append(last, g)
		last = int64(g.Index)
	}
	var got []Grain
	if err := m.All(func(g Grain) error { got = append(got, g); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if err := (GrainMap{0x80}).All(func(Grain) error { return nil }); !errors.Is(err, ErrInvalidParams) {
		t.Errorf("truncated varint: %v", err)
	}
}

// slot is where a grain sits in a qemu-layout test image.
type slot struct {
	lba  uint64
	off  int64 // marker offset
	size uint32
}

func slots(t testing.TB, p *Params) []slot {
	t.Helper()
	var s []slot
	cur := int64(p.Header.Overhead)
	err := p.Grains.All(func(g Grain) error {
		s = append(s, slot{lba: g.Index * p.Header.GrainSize, off: cur * SectorSize, size: g.Size})
		cur += int64(slotSectors(g.Size))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// gteOffset is the file offset of grain g's entry in the primary grain table.
func gteOffset(b []byte, g uint64) int64 {
	le := binary.LittleEndian
	gd := le.Uint64(b[56:])
	gt := le.Uint32(b[gd*SectorSize+g/512*4:])
	return int64(gt)*SectorSize + int64(g%512)*4
}

func TestCorrupt(t *testing.T) {
	orig := readFile(t, qemuVMDK(t, disks[0], variants[0].opts))
	p, err := openBytes(t, orig).Params()
	if err != nil {
		t.Fatal(err)
	}
	ss := slots(t, p)
	s := ss[len(ss)/2]
	g := s.lba / p.Header.GrainSize
	le := binary.LittleEndian
	tests := []struct {
		name   string
		edit   func(b []byte) []byte
		want   []string
		target error
	}{
		{"bad adler32", func(b []byte) []byte {
			b[s.off+grainMark+int64(s.size)-1] ^= 0xff
			return b
		}, []string{"grain for LBA", "zlib: invalid checksum"}, ErrCorrupt},
		{"flipped byte in grain", func(b []byte) []byte {
			b[s.off+grainMark+int64(s.size)/2] ^= 0x55
			return b
		}, []string{"grain for LBA", "zlib"}, ErrCorrupt},
		{"bad zlib header", func(b []byte) []byte {
			b[s.off+grainMark] = 0
			return b
		}, []string{"grain for LBA", "zlib: invalid header"}, ErrCorrupt},
		{"GT entry past the end", func(b []byte) []byte {
			le.PutUint32(b[gteOffset(b, g):], 0x7fffffff)
			return b
		}, []string{"grain for LBA", "at offset 0xfffffffe00", "past the end"}, ErrCorrupt},
		{"GT entry at another grain", func(b []byte) []byte {
			le.PutUint32(b[gteOffset(b, g):], uint32(ss[0].off/SectorSize))
			return b
		}, []string{"grain for LBA", "grain marker says LBA"}, ErrCorrupt},
		{"marker size too large", func(b []byte) []byte {
			le.PutUint32(b[s.off+8:], 1<<30)
			return b
		}, []string{"grain for LBA", "compressed bytes"}, ErrCorrupt},
		{"GD entry past the end", func(b []byte) []byte {
			le.PutUint32(b[le.Uint64(b[56:])*SectorSize:], 0x7fffffff)
			return b
		}, []string{"grain table 0 at offset 0xfffffffe00"}, ErrCorrupt},
		{"truncated in the last grain", func(b []byte) []byte {
			last := ss[len(ss)-1]
			return b[:last.off+grainMark+int64(last.size)-1]
		}, []string{"grain for LBA", "past the end"}, ErrCorrupt},
		{"truncated before the grains", func(b []byte) []byte { return b[:20000] }, []string{"file truncated"}, ErrCorrupt},
		{"truncated header", func(b []byte) []byte { return b[:100] }, []string{"shorter than a header"}, ErrNotVMDK},
		{"zero grain size", func(b []byte) []byte {
			le.PutUint64(b[20:], 0)
			return b
		}, []string{"grain size 0"}, ErrCorrupt},
		{"huge capacity", func(b []byte) []byte {
			le.PutUint64(b[12:], 1<<50)
			return b
		}, []string{"grain directory"}, ErrCorrupt},
		{"not a vmdk", func(b []byte) []byte {
			copy(b, "QFI\xfb")
			return b
		}, []string{"not a sparse VMDK"}, ErrNotVMDK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.edit(bytes.Clone(orig))
			img, err := Open(bytes.NewReader(b), int64(len(b)))
			if err == nil {
				err = readGuest(img)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !errors.Is(err, tc.target) {
				t.Errorf("error %q does not wrap %v", err, tc.target)
			}
			var ge *GrainError
			if strings.Contains(tc.want[0], "grain for LBA") {
				if !errors.As(err, &ge) {
					t.Fatalf("error %q is not a *GrainError", err)
				}
			}
		})
	}
	// The error names the grain's LBA and offset exactly.
	b := bytes.Clone(orig)
	b[s.off+grainMark+int64(s.size)-1] ^= 0xff
	img := openBytes(t, b)
	_, err = img.ReadAt(make([]byte, 10), int64(s.lba)*SectorSize)
	want := fmt.Sprintf("vmdk: grain for LBA %#x at offset %#x: zlib: invalid checksum", s.lba, s.off)
	if err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
}

// Truncating anywhere before the end of the last grain's data is an error,
// never a silently shorter or wrong disk.
func TestTruncatedAnywhere(t *testing.T) {
	orig := readFile(t, qemuVMDK(t, disks[0], variants[0].opts))
	p, err := openBytes(t, orig).Params()
	if err != nil {
		t.Fatal(err)
	}
	ss := slots(t, p)
	last := ss[len(ss)-1]
	end := last.off + grainMark + int64(last.size)
	rng := rand.New(rand.NewPCG(3, 3))
	for range 300 {
		n := rng.Int64N(end)
		img, err := Open(bytes.NewReader(orig[:n]), n)
		if err == nil {
			err = readGuest(img)
		}
		if err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}

// toFooterLayout rewrites a qemu image into VMware's stream layout: header
// with GDAtEnd, grains, then grain table markers, a grain directory marker,
// the footer and the end-of-stream marker.
func toFooterLayout(t testing.TB, orig []byte) []byte {
	t.Helper()
	img := openBytes(t, orig)
	p, err := img.Params()
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	h := p.Header
	out := make([]byte, h.Overhead*SectorSize)
	hb := h
	hb.GDOffset = GDAtEnd
	hb.Flags &^= FlagRGD
	hb.RGDOffset = 0
	copy(out, hb.marshal())
	copy(out[h.DescriptorOffset*SectorSize:], p.Descriptor)
	g := img.geo
	gts := make([]byte, g.gdEntries*g.gtSectors*SectorSize)
	for _, s := range slots(t, p) {
		idx := s.lba / h.GrainSize
		le.PutUint32(gts[idx*4:], uint32(len(out)/SectorSize))
		n := int(slotSectors(s.size)) * SectorSize
		out = append(out, orig[s.off:s.off+int64(n)]...)
	}
	marker := func(val uint64, typ uint32) {
		m := make([]byte, SectorSize)
		le.PutUint64(m, val)
		le.PutUint32(m[12:], typ)
		out = append(out, m...)
	}
	gd := make([]byte, g.gdSectors*SectorSize)
	for i := uint64(0); i < g.gdEntries; i++ {
		marker(g.gtSectors, markerGT)
		le.PutUint32(gd[i*4:], uint32(len(out)/SectorSize))
		out = append(out, gts[i*g.gtSectors*SectorSize:(i+1)*g.gtSectors*SectorSize]...)
	}
	marker(g.gdSectors, markerGD)
	gdAt := uint64(len(out) / SectorSize)
	out = append(out, gd...)
	marker(1, markerFooter)
	fh := h
	fh.GDOffset = gdAt
	fh.Flags &^= FlagRGD
	fh.RGDOffset = 0
	f := make([]byte, SectorSize)
	copy(f, fh.marshal())
	out = append(out, f...)
	marker(0, markerEOS)
	return out
}

func TestFooterLayout(t *testing.T) {
	path := qemuVMDK(t, disks[1], variants[0].opts)
	b := toFooterLayout(t, readFile(t, path))
	img := openBytes(t, b)
	got, err := guestSHA(img)
	if err != nil {
		t.Fatal(err)
	}
	if want := qemuGuestSHA(t, path); got != want {
		t.Fatal("footer layout: guest view differs")
	}
	// qemu-img reads it the same way.
	fp := t.TempDir() + "/footer.vmdk"
	if err := os.WriteFile(fp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if want := qemuGuestSHA(t, fp); got != want {
		t.Fatal("footer layout: qemu-img reads another guest")
	}
	p, err := img.Params()
	if err != nil {
		t.Fatal(err)
	}
	if p.Layout != "" || !strings.Contains(p.LayoutNote, "footer") {
		t.Errorf("layout %q, note %q", p.Layout, p.LayoutNote)
	}
	if err := Encode(io.Discard, io.NewSectionReader(img, 0, img.Size()), p); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Encode of a footer layout: %v, want ErrUnsupported", err)
	}
	// A footer without its markers is refused.
	b[len(b)-SectorSize+12] = 9
	if _, err := Open(bytes.NewReader(b), int64(len(b))); err == nil || !strings.Contains(err.Error(), "end-of-stream") {
		t.Errorf("bad EOS marker: %v", err)
	}
}

func TestConcurrentReads(t *testing.T) {
	d := disks[1]
	img := openBytes(t, readFile(t, qemuVMDK(t, d, variants[0].opts)))
	want := readFile(t, rawDisk(t, d))
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			buf := make([]byte, 70000)
			for range 300 {
				off := rng.Int64N(int64(len(want) - len(buf)))
				if _, err := img.ReadAt(buf, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf, want[off:off+int64(len(buf))]) {
					errs <- errors.New("data differs")
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

package vmdk

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// needZlib skips encoder tests in a build without cgo, the only build in
// which they skip.
func needZlib(t testing.TB) {
	t.Helper()
	if !zlibAvailable {
		t.Skip("encoder needs zlib through cgo; this build has CGO_ENABLED=0")
	}
}

// onlyReader hides io.Seeker, so Encode must read unallocated ranges.
type onlyReader struct{ io.Reader }

func TestEncodeReproducesQemu(t *testing.T) {
	needZlib(t)
	for _, v := range variants {
		for _, d := range disks {
			t.Run(v.name+"/"+d.name, func(t *testing.T) {
				path := qemuVMDK(t, d, v.opts)
				orig := readFile(t, path)
				img := openBytes(t, orig)
				p, err := img.Params()
				if err != nil {
					t.Fatal(err)
				}
				// Params go through JSON, as in a recipe.
				j, err := json.Marshal(p)
				if err != nil {
					t.Fatal(err)
				}
				p = new(Params)
				if err := json.Unmarshal(j, p); err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				if err := Encode(&out, io.NewSectionReader(img, 0, img.Size()), p); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), orig) {
					t.Fatalf("Encode: %d bytes differ from qemu-img's %d (first difference at %#x)", out.Len(), len(orig), firstDiff(out.Bytes(), orig))
				}
				// From the raw disk itself, not padded to a sector, read
				// without seeking.
				f, err := os.Open(rawDisk(t, d))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				out.Reset()
				if err := Encode(&out, onlyReader{f}, p); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), orig) {
					t.Fatalf("Encode from the raw disk differs (first difference at %#x)", firstDiff(out.Bytes(), orig))
				}
				enc := filepath.Join(t.TempDir(), "enc.vmdk")
				if err := os.WriteFile(enc, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				qemuImg(t, "check", enc)

				ok, n, err := Reproduces(bytes.NewReader(orig), int64(len(orig)))
				if err != nil || !ok || n != 0 {
					t.Fatalf("Reproduces = %v, %d, %v", ok, n, err)
				}
			})
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestVerifyReport(t *testing.T) {
	needZlib(t)
	orig := readFile(t, qemuVMDK(t, disks[1], variants[0].opts))
	r, err := Verify(bytes.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Identical() || r.Grains == 0 || !strings.HasPrefix(r.Deflate, "zlib-1.") || !strings.HasSuffix(r.Deflate, " level 6") {
		t.Fatalf("report %+v", r)
	}
	t.Logf("%d grains reproduced with %s", r.Grains, r.Deflate)
	// The reported deflate name is accepted back in Params.
	img := openBytes(t, orig)
	p, _ := img.Params()
	p.Deflate = r.Deflate
	var out bytes.Buffer
	if err := Encode(&out, io.NewSectionReader(img, 0, img.Size()), p); err != nil || !bytes.Equal(out.Bytes(), orig) {
		t.Fatalf("Encode with Deflate %q: %v", p.Deflate, err)
	}
}

// A grain compressed by another deflate (here Go's) is valid and reads the
// same, but does not reproduce: Verify and Encode name exactly that grain.
func TestForeignGrain(t *testing.T) {
	needZlib(t)
	orig := readFile(t, qemuVMDK(t, disks[1], variants[0].opts))
	img := openBytes(t, orig)
	p, err := img.Params()
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Clone(orig)
	var victim *slot
	for _, s := range slots(t, p) {
		data := make([]byte, img.grainLen(s.lba/p.Header.GrainSize))
		if _, err := img.ReadAt(data, int64(s.lba)*SectorSize); err != nil {
			t.Fatal(err)
		}
		for level := 1; level <= 9 && victim == nil; level++ {
			var z bytes.Buffer
			zw, _ := zlib.NewWriterLevel(&z, level)
			zw.Write(data)
			zw.Close()
			comp := z.Bytes()
			room := int(slotSectors(s.size))*SectorSize - grainMark
			if len(comp) > room || bytes.Equal(comp, orig[s.off+grainMark:s.off+grainMark+int64(s.size)]) || uint32(len(comp)) == s.size {
				continue
			}
			binary.LittleEndian.PutUint32(b[s.off+8:], uint32(len(comp)))
			clear(b[s.off+grainMark : s.off+grainMark+int64(room)])
			copy(b[s.off+grainMark:], comp)
			victim = &s
		}
		if victim != nil {
			break
		}
	}
	if victim == nil {
		t.Skip("no grain where Go's deflate fits qemu's slot")
	}
	img2 := openBytes(t, b)
	g1, _ := guestSHA(img)
	g2, err := guestSHA(img2)
	if err != nil || g1 != g2 {
		t.Fatalf("patched image reads differently: %v", err)
	}
	r, err := img2.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if r.Identical() || len(r.Mismatched) != 1 || r.Mismatched[0] != victim.lba || r.MetadataDiff != 0 {
		t.Fatalf("report %+v, want grain %#x alone", r, victim.lba)
	}
	ok, n, err := Reproduces(bytes.NewReader(b), int64(len(b)))
	if ok || n != 1 || err != nil {
		t.Fatalf("Reproduces = %v, %d, %v", ok, n, err)
	}
	p2, _ := img2.Params()
	var out bytes.Buffer
	err = Encode(&out, io.NewSectionReader(img2, 0, img2.Size()), p2)
	var me *MismatchError
	if !errors.As(err, &me) || !errors.Is(err, ErrGrainMismatch) || len(me.LBAs) != 1 || me.LBAs[0] != victim.lba {
		t.Fatalf("Encode: %v, want a MismatchError for LBA %#x", err, victim.lba)
	}
	// Everything but the grain's slot is exact: a delta carries only it.
	checkOnlySlotDiffers(t, out.Bytes(), b, *victim)
}

func checkOnlySlotDiffers(t *testing.T, got, want []byte, s slot) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("output %d bytes, want %d", len(got), len(want))
	}
	end := s.off + int64(slotSectors(s.size))*SectorSize
	if !bytes.Equal(got[:s.off], want[:s.off]) || !bytes.Equal(got[end:], want[end:]) {
		t.Fatalf("bytes outside the slot [%#x, %#x) differ (first at %#x)", s.off, end, firstDiff(got, want))
	}
}

// A guest that differs in one grain (as metal.raw differs from the aws disk
// in its platform ID) gives the image with only that grain's slot changed.
func TestEncodeOtherGuest(t *testing.T) {
	needZlib(t)
	d := disks[0]
	orig := readFile(t, qemuVMDK(t, d, variants[0].opts))
	p, err := openBytes(t, orig).Params()
	if err != nil {
		t.Fatal(err)
	}
	raw := readFile(t, rawDisk(t, d))
	ss := slots(t, p)
	// Pick a grain that compresses well and fill part of it with noise, so
	// its compressed size grows past its slot.
	var s slot
	for _, x := range ss {
		if x.size < 20000 {
			s = x
			break
		}
	}
	guest := bytes.Clone(raw)
	off := int(s.lba) * SectorSize
	for i := range 30000 {
		guest[off+i] = byte(i*7919 + i>>3)
	}
	var out bytes.Buffer
	err = Encode(&out, bytes.NewReader(guest), p)
	var me *MismatchError
	if !errors.As(err, &me) || len(me.LBAs) != 1 || me.LBAs[0] != s.lba {
		t.Fatalf("Encode: %v, want a mismatch at LBA %#x", err, s.lba)
	}
	checkOnlySlotDiffers(t, out.Bytes(), orig, s)
}

func TestEncodeBadParams(t *testing.T) {
	orig := readFile(t, qemuVMDK(t, disks[0], variants[0].opts))
	good, err := openBytes(t, orig).Params()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edit   func(p *Params)
		target error
	}{
		{"other layout", func(p *Params) { p.Layout = "" }, ErrUnsupported},
		{"other deflate", func(p *Params) { p.Deflate = "zstd" }, ErrUnsupported},
		{"bad grain map", func(p *Params) { p.Grains = append(p.Grains, 0x80) }, ErrInvalidParams},
		{"grain beyond guest", func(p *Params) { p.Grains = p.Grains.Append(-1, Grain{Index: 1 << 30, Size: 10}) }, ErrInvalidParams},
		{"file too small", func(p *Params) { p.FileSize = 1 << 16 }, ErrInvalidParams},
		{"descriptor too long", func(p *Params) { p.Descriptor = make([]byte, 20*SectorSize+1) }, ErrInvalidParams},
		{"overlapping tables", func(p *Params) { p.Header.GDOffset = p.Header.RGDOffset + 1 }, ErrInvalidParams},
		{"zero grain size", func(p *Params) { p.Header.GrainSize = 0 }, ErrInvalidParams},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := *good
			p.Grains = bytes.Clone(good.Grains)
			tc.edit(&p)
			var out bytes.Buffer
			err := Encode(&out, bytes.NewReader(nil), &p)
			if !errors.Is(err, tc.target) {
				t.Fatalf("Encode: %v, want %v", err, tc.target)
			}
			if out.Len() != 0 {
				t.Errorf("wrote %d bytes before failing", out.Len())
			}
		})
	}
	t.Run("guest too short", func(t *testing.T) {
		needZlib(t)
		err := Encode(io.Discard, bytes.NewReader(make([]byte, 1000)), good)
		if err == nil || !strings.Contains(err.Error(), "guest ends at offset") {
			t.Fatalf("Encode: %v", err)
		}
	})
}

func TestEncodeWithoutZlib(t *testing.T) {
	if zlibAvailable {
		t.Skip("this build has zlib (cgo); see TestEncodeReproducesQemu")
	}
	orig := readFile(t, qemuVMDK(t, disks[0], variants[0].opts))
	img := openBytes(t, orig)
	p, err := img.Params()
	if err != nil {
		t.Fatal(err)
	}
	err = Encode(io.Discard, io.NewSectionReader(img, 0, img.Size()), p)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "cgo") {
		t.Fatalf("Encode without cgo: %v", err)
	}
	if _, _, err := Reproduces(bytes.NewReader(orig), int64(len(orig))); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Reproduces without cgo: %v", err)
	}
}

// An 8 GiB guest with little data: 257 grain tables of 32 MiB each, and Encode seeks over
// the holes of the guest instead of reading them.
func TestEncodeLargeSparse(t *testing.T) {
	needZlib(t)
	d := diskSpec{name: "sparse-8g", size: 8<<30 + 512, islands: 12, seed: 8}
	path := qemuVMDK(t, d, variants[0].opts)
	orig := readFile(t, path)
	img := openBytes(t, orig)
	p, err := img.Params()
	if err != nil {
		t.Fatal(err)
	}
	if img.geo.gdEntries != 257 {
		t.Errorf("%d grain tables, want 257", img.geo.gdEntries)
	}
	raw, err := os.Open(rawDisk(t, d))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for name, guest := range map[string]io.Reader{"image": io.NewSectionReader(img, 0, img.Size()), "raw": raw} {
		var out bytes.Buffer
		if err := Encode(&out, guest, p); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), orig) {
			t.Fatalf("Encode from %s differs at %#x", name, firstDiff(out.Bytes(), orig))
		}
	}
	// The allocated grains read as the raw disk does.
	for _, s := range slots(t, p) {
		got := make([]byte, img.grainLen(s.lba/p.Header.GrainSize))
		want := make([]byte, len(got))
		if _, err := img.ReadAt(got, int64(s.lba)*SectorSize); err != nil {
			t.Fatal(err)
		}
		raw.ReadAt(want, int64(s.lba)*SectorSize)
		if !bytes.Equal(got, want) {
			t.Fatalf("grain at LBA %#x differs from the raw disk", s.lba)
		}
	}
}

package iso

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pattern is n bytes that differ at every 4-byte position, so a misplaced
// section shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/4) ^ byte(i>>10)
	}
	return b
}

// TestMultiExtent builds multi-extent files in Go (xorriso only splits files
// at 4 GiB) and checks them against xorriso's reading of the same image.
func TestMultiExtent(t *testing.T) {
	requireTools(t, "xorriso")
	contiguous, gapped := pattern(3*sectorSize*4+77), pattern(2*sectorSize*3+5)
	root := dirNode("",
		dirNode("images",
			&node{name: "big.img", data: contiguous, sections: 4},
			&node{name: "gapped.img", data: gapped, sections: 2, gap: true},
			fileNode("small.txt", []byte("small\n"))))
	img := newBuilder().build(root, true, true)
	isoPath := filepath.Join(t.TempDir(), "multi.iso")
	writeFile(t, isoPath, img)

	im, f := openISO(t, isoPath)
	checkAgainstXorriso(t, im, isoPath)
	extracted := filepath.Join(t.TempDir(), "x")
	run(t, "", "xorriso", "-osirrox", "on", "-indev", isoPath, "-extract", "/images", extracted)

	for _, c := range []struct {
		path     string
		data     []byte
		sections int
		contig   bool
	}{
		{"/images/big.img", contiguous, 4, true},
		{"/images/gapped.img", gapped, 2, false},
	} {
		want, err := os.ReadFile(filepath.Join(extracted, filepath.Base(c.path)))
		if err != nil || !bytes.Equal(want, c.data) {
			t.Fatalf("xorriso does not read %s as built (%v): the builder is wrong", c.path, err)
		}
		got, err := im.Lookup(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Extents) != c.sections || got.Size != int64(len(c.data)) || got.Contiguous() != c.contig {
			t.Errorf("%s: %d extents, %d bytes, contiguous %v; want %d, %d, %v", c.path, len(got.Extents), got.Size, got.Contiguous(), c.sections, len(c.data), c.contig)
		}
		var joined []byte
		for _, e := range got.Extents {
			joined = append(joined, readExtent(t, f, e)...)
		}
		if !bytes.Equal(joined, c.data) {
			t.Errorf("%s: extents do not hold the file", c.path)
		}
		ext, err := im.FindContent(int64(len(c.data)), sha256hex(c.data))
		switch {
		case c.contig && (err != nil || ext != Extent{got.Offset, got.Size}):
			t.Errorf("FindContent(%s) = %+v, %v; want %+v", c.path, ext, err, Extent{got.Offset, got.Size})
		case !c.contig && !errors.Is(err, ErrNotFound):
			t.Errorf("FindContent(%s) = %+v, %v; want ErrNotFound for a file in separate pieces", c.path, ext, err)
		}
	}
}

// TestLookupNames covers the name fallbacks on each kind of tree.
func TestLookupNames(t *testing.T) {
	tree := func() *node {
		return dirNode("", dirNode("Images", fileNode("vmlinuz", []byte("kernel"))))
	}
	for _, c := range []struct {
		name              string
		rockRidge, joliet bool
		lookup, wantPath  string
	}{
		{"rock ridge exact", true, true, "/Images/vmlinuz", "/Images/vmlinuz"},
		{"rock ridge, ISO name", true, true, "/IMAGES/VMLINUZ", "/Images/vmlinuz"},
		{"rock ridge is case-sensitive before falling back", true, false, "/images/Vmlinuz", "/Images/vmlinuz"},
		{"joliet exact", false, true, "/Images/vmlinuz", "/Images/vmlinuz"},
		{"joliet, ISO name from the primary tree", false, true, "/images/VMLINUZ", "/IMAGES/VMLINUZ"},
		{"plain, any case", false, false, "/images/vmlinuz", "/IMAGES/VMLINUZ"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := newBuilder().build(tree(), c.rockRidge, c.joliet)
			im, err := Open(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			f, err := im.Lookup(c.lookup)
			if err != nil || f.Path != c.wantPath || string(img[f.Offset:f.Offset+f.Size]) != "kernel" {
				t.Errorf("Lookup(%s) = %+v, %v; want the kernel at %s", c.lookup, f, err, c.wantPath)
			}
			if _, err := im.Lookup("/Images/nothing"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Lookup of a missing file: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestHostile feeds images that a careless reader would loop on, crash on or
// exhaust memory on. Each must fail fast with ErrCorrupt at the right offset.
func TestHostile(t *testing.T) {
	type hostile struct {
		img    []byte
		offset int64
	}
	cases := []struct {
		name  string
		build func() hostile
	}{
		{"directory containing itself", func() hostile {
			self := dirNode("self")
			a := dirNode("a", self)
			img := newBuilder().build(dirNode("", a), true, false)
			putBoth32At(img, int64(self.recOff[0])+2, uint32(a.lba))
			return hostile{img, int64(self.recOff[0])}
		}},
		{"two directories sharing an extent", func() hostile {
			x, y := dirNode("x"), dirNode("y")
			img := newBuilder().build(dirNode("", x, y), false, false)
			putBoth32At(img, int64(y.recOff[0])+2, uint32(x.lba))
			return hostile{img, int64(y.recOff[0])}
		}},
		{"nesting deeper than the limit", func() hostile {
			leaf := dirNode("d")
			n := leaf
			for range maxDepth {
				n = dirNode("d", n)
			}
			img := newBuilder().build(dirNode("", n), false, false)
			return hostile{img, int64(leaf.recOff[0])}
		}},
		{"multi-extent file that never ends", func() hostile {
			big := &node{name: "big", data: pattern(3 * sectorSize), sections: 3}
			img := newBuilder().build(dirNode("", big), true, false)
			img[big.recOff[2]+25] |= flagMultiExtent
			return hostile{img, int64(big.recOff[0])}
		}},
		{"multi-extent file cut by another name", func() hostile {
			big := &node{name: "big", data: pattern(2 * sectorSize), sections: 2}
			other := fileNode("other", []byte("x"))
			img := newBuilder().build(dirNode("", big, other), true, false)
			img[big.recOff[1]+25] |= flagMultiExtent
			return hostile{img, int64(other.recOff[0])}
		}},
		{"continuation area that continues itself", func() hostile {
			b := newBuilder()
			ce := b.alloc(1)
			b.put(ce, suCE(ce, 0, 28))
			img := b.build(dirNode("", &node{name: "f", data: []byte("x"), su: suCE(ce, 0, 28)}), true, false)
			return hostile{img, int64(ce * sectorSize)}
		}},
		{"continuation area past the end", func() hostile {
			f := &node{name: "f", data: []byte("x"), su: suCE(1<<24, 0, 64)}
			img := newBuilder().build(dirNode("", f), true, false)
			rec := int64(f.recOff[0])
			return hostile{img, rec + int64(bytes.Index(img[rec:rec+int64(img[rec])], []byte("CE")))}
		}},
		{"Rock Ridge name with a slash", func() hostile {
			f := &node{name: "f", data: []byte("x"), su: suNM("/../../etc/passwd")}
			img := newBuilder().build(dirNode("", f), true, false)
			return hostile{img, int64(f.recOff[0])}
		}},
		{"Rock Ridge CL pointing at file data", func() hostile {
			data := fileNode("data", bytes.Repeat([]byte{0x55}, 100))
			b := newBuilder()
			target := b.alloc(1)
			b.put(target, bytes.Repeat([]byte{0x55}, sectorSize))
			f := &node{name: "moved", data: []byte("x"), su: suCL(target)}
			img := b.build(dirNode("", data, f), true, false)
			rec := int64(f.recOff[0])
			return hostile{img, rec + int64(bytes.Index(img[rec:rec+int64(img[rec])], []byte("CL")))}
		}},
		{"record running past its sector", func() hostile {
			var kids []*node
			for i := range 60 { // two sectors of records
				kids = append(kids, fileNode(strings.Repeat("n", 10+i%7)+string(rune('a'+i%26)), nil))
			}
			root := dirNode("", kids...)
			img := newBuilder().build(root, false, false)
			// The last record of the root's first sector: make it reach into the next one.
			var last int64
			for _, k := range kids {
				if k.recOff[0] < (root.lba+1)*sectorSize {
					last = max(last, int64(k.recOff[0]))
				}
			}
			img[last] = byte(sectorSize - last%sectorSize + 8)
			return hostile{img, last}
		}},
		{"more entries than the limit", func() hostile {
			// One directory of maxEntries+1 identical empty-file records.
			rec := dirRecord("X;1", 0, 0, 0, nil)
			perSector := sectorSize / len(rec)
			sectors := (maxEntries+1+perSector-1)/perSector + 1
			b := newBuilder()
			dir := b.alloc(sectors)
			recs := [][]byte{dirRecord("\x00", dir, sectors*sectorSize, flagDir, nil), dirRecord("\x01", dir, sectors*sectorSize, flagDir, nil)}
			for range maxEntries + 1 {
				recs = append(recs, rec)
			}
			data, offs := packRecords(recs)
			b.put(dir, data[:min(len(data), sectors*sectorSize)])
			img := b.build(dirNode(""), false, false)
			// Point the root at the big directory.
			putBoth32At(img, descriptorOff+156+2, uint32(dir))
			putBoth32At(img, descriptorOff+156+10, uint32(sectors*sectorSize))
			return hostile{img, int64(dir*sectorSize + offs[2+maxEntries])}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := c.build()
			start := time.Now()
			checkFormatError(t, openAndWalk(h.img, int64(len(h.img))), ErrCorrupt, h.offset)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestInterleavedIsUnsupported(t *testing.T) {
	f := fileNode("f", []byte("x"))
	img := newBuilder().build(dirNode("", f), false, false)
	img[f.recOff[0]+26] = 1
	err := openAndWalk(img, int64(len(img)))
	var fe *FormatError
	if !errors.Is(err, errors.ErrUnsupported) || !errors.As(err, &fe) || fe.Offset != int64(f.recOff[0])+26 {
		t.Errorf("interleaved file: %v, want errors.ErrUnsupported at %d", err, f.recOff[0]+26)
	}
}

package iso

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func openISO(t *testing.T, path string) (*Image, *os.File) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	im, err := Open(f, st.Size())
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return im, f
}

// listing splits Files() the way xorriso -find -type f/d/l does.
func listing(t *testing.T, im *Image) (regular, dirs, links []string) {
	t.Helper()
	files, err := im.Files()
	if err != nil {
		t.Fatalf("Files: %v", err)
	}
	if !slices.IsSortedFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) }) {
		t.Errorf("Files() is not sorted by path")
	}
	for _, f := range files {
		switch {
		case f.IsDir:
			dirs = append(dirs, f.Path)
		case f.Mode&os.ModeSymlink != 0:
			links = append(links, f.Path)
		case f.Mode.IsRegular():
			regular = append(regular, f.Path)
		default:
			t.Errorf("%s: unexpected mode %v", f.Path, f.Mode)
		}
	}
	return regular, dirs, links
}

// checkAgainstXorriso compares Files() with what xorriso lists.
func checkAgainstXorriso(t *testing.T, im *Image, isoPath string) {
	t.Helper()
	regular, dirs, links := listing(t, im)
	wantRegular := xorrisoFind(t, isoPath, "-type", "f")
	if cat := xorrisoBootCatalog(t, isoPath); cat != "" {
		wantRegular = append(wantRegular, cat) // xorriso lists the catalog as neither file nor directory
		slices.Sort(wantRegular)
	}
	wantDirs := slices.DeleteFunc(xorrisoFind(t, isoPath, "-type", "d"), func(p string) bool { return p == "/" })
	wantLinks := xorrisoFind(t, isoPath, "-type", "l")
	for _, c := range []struct {
		kind      string
		got, want []string
	}{{"files", regular, wantRegular}, {"directories", dirs, wantDirs}, {"symlinks", links, wantLinks}} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s differ from xorriso's:\n got %q\nwant %q", c.kind, c.got, c.want)
		}
	}
}

func readExtent(t *testing.T, r interface {
	ReadAt([]byte, int64) (int, error)
}, e Extent) []byte {
	t.Helper()
	b := make([]byte, e.Size)
	if _, err := r.ReadAt(b, e.Offset); err != nil {
		t.Fatalf("read %d bytes at %d: %v", e.Size, e.Offset, err)
	}
	return b
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestLiveISO(t *testing.T) {
	lt := makeLiveTree(t, false)
	isoPath := makeLiveISO(t, lt)
	im, f := openISO(t, isoPath)
	if im.VolumeID() != liveLabel {
		t.Errorf("VolumeID() = %q, want %q", im.VolumeID(), liveLabel)
	}
	checkAgainstXorriso(t, im, isoPath)

	// Every regular file of the tree, byte for byte, by its Rock Ridge name.
	for p, data := range lt.files {
		got, err := im.Lookup("/" + p)
		if err != nil {
			t.Errorf("Lookup(/%s): %v", p, err)
			continue
		}
		if got.Path != "/"+p || got.IsDir || got.Size != int64(len(data)) || !got.Contiguous() || !got.Mode.IsRegular() {
			t.Errorf("Lookup(/%s) = %+v, want a regular contiguous file of %d bytes", p, got, len(data))
			continue
		}
		content := readExtent(t, f, Extent{got.Offset, got.Size})
		if p == "isolinux/isolinux.bin" {
			// -boot-info-table rewrote bytes 8..63 and nothing else.
			if bytes.Equal(content[8:64], data[8:64]) || !bytes.Equal(content[64:], data[64:]) {
				t.Errorf("isolinux.bin in the ISO: want only bytes 8..63 rewritten by -boot-info-table")
			}
			continue
		}
		if !bytes.Equal(content, data) {
			t.Errorf("/%s: extent %d+%d differs from the original file", p, got.Offset, got.Size)
		}
	}

	// The PXE set: one contiguous extent of the ISO each, found by content.
	for _, p := range pxeFiles {
		data := lt.files[p]
		want, err := im.Lookup(p)
		if err != nil {
			t.Fatalf("Lookup(%s): %v", p, err)
		}
		ext, err := im.FindContent(int64(len(data)), sha256hex(data))
		if err != nil {
			t.Fatalf("FindContent(%s): %v", p, err)
		}
		if ext != (Extent{want.Offset, want.Size}) {
			t.Errorf("FindContent(%s) = %+v, want %+v", p, ext, Extent{want.Offset, want.Size})
		}
		if !bytes.Equal(readExtent(t, f, ext), data) {
			t.Errorf("FindContent(%s): extent %+v is not the file", p, ext)
		}
		// ISO 9660 names answer too, ignoring case; Path stays the Rock Ridge one.
		upper, err := im.Lookup(strings.ToUpper(p))
		if err != nil || upper.Offset != want.Offset || upper.Path != "/"+p {
			t.Errorf("Lookup(%s) = %+v, %v; want the file at %d named /%s", strings.ToUpper(p), upper, err, want.Offset, p)
		}
	}

	// The pristine isolinux.bin is nowhere in the image: -boot-info-table changed it.
	orig := lt.files["isolinux/isolinux.bin"]
	if _, err := im.FindContent(int64(len(orig)), sha256hex(orig)); !errors.Is(err, ErrNotFound) {
		t.Errorf("FindContent(pristine isolinux.bin) = %v, want ErrNotFound", err)
	}
	if _, err := im.FindContent(10, "xyz"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("FindContent with a bad hash = %v, want a plain error", err)
	}
	if _, err := im.Lookup("/images/pxeboot/VMLINUZ.orig"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup of a missing file = %v, want ErrNotFound", err)
	}
	if _, err := im.Lookup("/images/pxeboot/vmlinuz/x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Lookup below a file = %v, want ErrNotFound", err)
	}
	if _, err := im.Lookup("/IMAGES/PXEBOOT/vmlinuz"); err != nil {
		t.Errorf("Lookup mixing ISO 9660 and Rock Ridge components: %v", err)
	}
	root, err := im.Lookup("/")
	if err != nil || !root.IsDir || root.Path != "/" {
		t.Errorf("Lookup(/) = %+v, %v", root, err)
	}
	dir, err := im.Lookup("images/pxeboot/")
	if err != nil || !dir.IsDir || dir.Path != "/images/pxeboot" {
		t.Errorf("Lookup(images/pxeboot/) = %+v, %v", dir, err)
	}
}

// TestXorrisoVariants checks the listing against xorriso for images with
// only Joliet, with neither Rock Ridge nor Joliet, and with Rock Ridge deep
// directories kept or relocated (CL/RE entries).
func TestXorrisoVariants(t *testing.T) {
	requireTools(t, "xorriso")
	variants := []struct {
		name string
		args []string // before "-map TREE /"
	}{
		{"joliet only", []string{"-rockridge", "off", "-joliet", "on"}},
		{"plain ISO 9660", []string{"-rockridge", "off", "-joliet", "off"}},
		{"rock ridge deep paths", []string{"-rockridge", "on", "-joliet", "on"}},
		{"rock ridge relocated", []string{"-rockridge", "on", "-compliance", "deep_paths_off", "-rr_reloc_dir", "rr_moved"}},
		{"rock ridge relocated to root", []string{"-rockridge", "on", "-compliance", "deep_paths_off"}},
	}
	lt := makeLiveTree(t, true)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			isoPath := filepath.Join(t.TempDir(), "v.iso")
			run(t, "", "xorriso", append(append([]string{"-outdev", isoPath}, v.args...), "-map", lt.dir, "/")...)
			im, f := openISO(t, isoPath)
			checkAgainstXorriso(t, im, isoPath)
			for _, p := range append(slices.Clone(pxeFiles), "deep/a/b/c/d/e/f/g/h/i/j/file.txt") {
				data := lt.files[p]
				got, err := im.Lookup(p)
				if err != nil {
					t.Errorf("Lookup(%s): %v", p, err)
					continue
				}
				if !bytes.Equal(readExtent(t, f, Extent{got.Offset, got.Size}), data) {
					t.Errorf("%s: extent differs from the original", p)
				}
				ext, err := im.FindContent(int64(len(data)), sha256hex(data))
				if err != nil || ext.Offset != got.Offset {
					t.Errorf("FindContent(%s) = %+v, %v; want offset %d", p, ext, err, got.Offset)
				}
			}
		})
	}
}

// findRecord returns the offset of the directory record named name (ISO 9660
// name, any case) in directory dir of img, scanning the bytes independently.
func findRecord(t *testing.T, img []byte, dir File, name string) int64 {
	t.Helper()
	for pos := dir.Offset; pos < dir.Offset+dir.Size; {
		l := int64(img[pos])
		if l == 0 {
			pos = (pos/sectorSize + 1) * sectorSize
			continue
		}
		ident := img[pos+33 : pos+33+int64(img[pos+32])]
		if strings.EqualFold(isoName(ident, img[pos+25]&flagDir != 0), name) {
			return pos
		}
		pos += l
	}
	t.Fatalf("no record %q in directory %s", name, dir.Path)
	return 0
}

func putBoth32At(img []byte, off int64, v uint32) {
	binary.LittleEndian.PutUint32(img[off:], v)
	binary.BigEndian.PutUint32(img[off+4:], v)
}

// checkFormatError checks that err wraps sentinel and names offset.
func checkFormatError(t *testing.T, err, sentinel error, offset int64) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
	var fe *FormatError
	if !errors.As(err, &fe) || fe.Offset != offset {
		t.Fatalf("error = %v, want a *FormatError at byte offset %d", err, offset)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("byte offset %d", offset)) {
		t.Fatalf("error %q does not name byte offset %d", err, offset)
	}
}

// openAndWalk returns the first error of Open and Files.
func openAndWalk(img []byte, size int64) error {
	im, err := Open(bytes.NewReader(img[:size]), size)
	if err != nil {
		return err
	}
	_, err = im.Files()
	return err
}

func TestCorruptLiveISO(t *testing.T) {
	lt := makeLiveTree(t, false)
	img, err := os.ReadFile(makeLiveISO(t, lt))
	if err != nil {
		t.Fatal(err)
	}
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(p string) File {
		f, err := im.Lookup(p)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	root, images, pxe := lookup("/"), lookup("/images"), lookup("/images/pxeboot")
	vmRec := findRecord(t, img, pxe, "vmlinuz")
	pxeRec := findRecord(t, img, images, "pxeboot")
	nmOff := vmRec + int64(bytes.Index(img[vmRec:vmRec+int64(img[vmRec])], []byte("NM")))

	cases := []struct {
		name     string
		size     int64 // 0: whole image
		mutate   func(b []byte)
		lookup   string // also Lookup this path and expect the same error
		sentinel error
		offset   int64
	}{
		{name: "truncated", size: int64(len(img)) / 2, sentinel: ErrCorrupt, offset: descriptorOff + 80},
		{name: "truncated inside the system area", size: 20000, sentinel: ErrNotISO, offset: 0},
		{name: "no CD001", mutate: func(b []byte) { copy(b[descriptorOff+1:], "CD002") }, sentinel: ErrNotISO, offset: descriptorOff + 1},
		{name: "record shorter than minimum", mutate: func(b []byte) { b[vmRec] = 20 },
			lookup: "/images/pxeboot/vmlinuz", sentinel: ErrCorrupt, offset: vmRec},
		{name: "flipped extent location byte", mutate: func(b []byte) { b[vmRec+2] ^= 1 },
			lookup: "/images/pxeboot/vmlinuz", sentinel: ErrCorrupt, offset: vmRec + 2},
		{name: "flipped data length byte", mutate: func(b []byte) { b[vmRec+13] ^= 0x80 },
			lookup: "/images/pxeboot/vmlinuz", sentinel: ErrCorrupt, offset: vmRec + 10},
		{name: "extent past the end", mutate: func(b []byte) { putBoth32At(b, vmRec+2, 0x00ffffff) },
			lookup: "/images/pxeboot/vmlinuz", sentinel: ErrCorrupt, offset: vmRec + 2},
		{name: "directory points at its parent", mutate: func(b []byte) { putBoth32At(b, pxeRec+2, uint32(images.Offset/sectorSize)) },
			lookup: "/images/pxeboot/pxeboot/vmlinuz", sentinel: ErrCorrupt, offset: pxeRec},
		{name: "directory points at the root", mutate: func(b []byte) { putBoth32At(b, pxeRec+2, uint32(root.Offset/sectorSize)) },
			lookup: "/images/pxeboot/images/pxeboot", sentinel: ErrCorrupt, offset: pxeRec},
		{name: "Rock Ridge entry longer than its area", mutate: func(b []byte) { b[nmOff+2] = 255 },
			lookup: "/images/pxeboot/vmlinuz", sentinel: ErrCorrupt, offset: nmOff},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(img)
			if c.mutate != nil {
				c.mutate(b)
			}
			size := int64(len(b))
			if c.size != 0 {
				size = c.size
			}
			checkFormatError(t, openAndWalk(b, size), c.sentinel, c.offset)
			if c.lookup != "" {
				im, err := Open(bytes.NewReader(b), size)
				if err != nil {
					t.Fatal(err)
				}
				_, err = im.Lookup(c.lookup)
				checkFormatError(t, err, c.sentinel, c.offset)
			}
		})
	}
}

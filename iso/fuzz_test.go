package iso

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzOpen feeds Open, Files, Lookup and FindContent arbitrary images. The
// input is the image from the volume descriptors on (byte 32768): the system
// area before them is never read, so it is supplied as zeros, which keeps
// inputs small and every mutation meaningful. Seeds are small images made by
// xorriso and by the Go builder at test time, so plain `go test` runs them,
// with the regression inputs in testdata/fuzz/FuzzOpen. Inputs are tens of
// KiB, so fuzz with a short -fuzzminimizetime (e.g. 3s): the default minute of
// minimizing per new input stalls the run.
func FuzzOpen(f *testing.F) {
	for _, img := range xorrisoSeeds(f) {
		f.Add(img[descriptorOff:])
	}
	for _, img := range builderSeeds() {
		f.Add(img[descriptorOff:])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img := append(make([]byte, descriptorOff, descriptorOff+len(data)), data...)
		im, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			checkKnownError(t, err)
			return
		}
		files, err := im.Files()
		if err != nil {
			checkKnownError(t, err)
			if _, err := im.Lookup("/images/pxeboot/vmlinuz"); err != nil && !errors.Is(err, ErrNotFound) {
				checkKnownError(t, err)
			}
			return
		}
		paths := map[string]int{}
		for _, f := range files {
			paths[f.Path]++
			for _, e := range f.Extents {
				if e.Size < 0 || (e.Size > 0 && (e.Offset < 0 || e.Offset+e.Size > int64(len(img)))) {
					t.Fatalf("%s: extent %d+%d outside the %d-byte image", f.Path, e.Offset, e.Size, len(img))
				}
			}
		}
		// Every listed path looks up to the same file, unless a name repeats
		// (Lookup then answers with the first).
		for i, f := range files {
			if i == 64 {
				break
			}
			if paths[f.Path] > 1 {
				continue
			}
			got, err := im.Lookup(f.Path)
			if err != nil {
				t.Fatalf("Lookup(%q) of a listed file: %v", f.Path, err)
			}
			if got.Path != f.Path || got.Offset != f.Offset || got.Size != f.Size || got.IsDir != f.IsDir {
				t.Fatalf("Lookup(%q) = %+v, Files() listed %+v", f.Path, got, f)
			}
		}
		if len(files) > 0 {
			_, err := im.FindContent(files[0].Size, strings.Repeat("0", 64))
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatalf("FindContent: %v", err)
			}
		}
	})
}

// checkKnownError fails unless err is one of the package's format errors.
func checkKnownError(t *testing.T, err error) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) || !(errors.Is(err, ErrNotISO) || errors.Is(err, ErrCorrupt) || errors.Is(err, errors.ErrUnsupported)) {
		t.Fatalf("error %v (%T) is not a *FormatError wrapping a sentinel", err, err)
	}
}

// xorrisoSeeds makes tiny images with xorriso: Rock Ridge + Joliet + El
// Torito, Joliet only, plain ISO 9660, and relocated deep directories.
func xorrisoSeeds(f *testing.F) [][]byte {
	requireTools(f, "xorriso")
	dir := f.TempDir()
	tree := filepath.Join(dir, "tree")
	for p, data := range map[string]string{
		"images/pxeboot/vmlinuz":     "kernel",
		"images/pxeboot/initrd.img":  "initrd",
		"isolinux/isolinux.bin":      strings.Repeat("b", 2048),
		"deep/a/b/c/d/e/f/g/h/i/x":   "deep",
		"docs/" + longName[:150]:     "long",
		"docs/empty":                 "",
		"EFI/fedora/grub.cfg":        "menuentry",
		"images/efiboot.img":         strings.Repeat("e", 4096),
		"coreos/features.json":       "{}",
		"zipl.prm":                   "x",
		"images/pxeboot/rootfs.img":  "rootfs",
		"images/ignition.img":        "",
		"isolinux/isolinux.cfg":      "default",
		"docs/a name with spaces.md": "spaces",
	} {
		writeFile(f, filepath.Join(tree, p), []byte(data))
	}
	if err := os.Symlink("empty", filepath.Join(tree, "docs/link")); err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	for i, args := range [][]string{
		{"-as", "mkisofs", "-R", "-J", "-joliet-long", "-V", liveLabel, "-no-pad",
			"-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
			"-eltorito-alt-boot", "-e", "images/efiboot.img", "-no-emul-boot", tree},
		{"-rockridge", "off", "-joliet", "on", "-map", tree, "/"},
		{"-rockridge", "off", "-joliet", "off", "-map", tree, "/"},
		{"-rockridge", "on", "-compliance", "deep_paths_off", "-rr_reloc_dir", "rr_moved", "-map", tree, "/"},
	} {
		out := filepath.Join(dir, "seed"+string(rune('0'+i))+".iso")
		if args[0] == "-as" {
			args = append(args[:len(args)-1], "-o", out, tree)
		} else {
			args = append([]string{"-outdev", out, "-padding", "0"}, args...)
		}
		run(f, "", "xorriso", args...)
		img, err := os.ReadFile(out)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, img)
	}
	return seeds
}

// builderSeeds are images xorriso does not make: multi-extent files, SUSP
// continuation areas, and a few broken ones to start the fuzzer near trouble.
func builderSeeds() [][]byte {
	var seeds [][]byte
	for _, mode := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
		root := dirNode("",
			dirNode("images", dirNode("pxeboot",
				&node{name: "vmlinuz", data: pattern(3*sectorSize + 5), sections: 3},
				&node{name: "rootfs.img", data: pattern(2*sectorSize + 9), sections: 2, gap: true},
				fileNode("initrd.img", []byte("initrd")))),
			fileNode("empty", nil))
		seeds = append(seeds, newBuilder().build(root, mode[0], mode[1]))
	}

	b := newBuilder()
	ce := b.alloc(1)
	long := suNM(strings.Repeat("n", 200))
	b.put(ce, long)
	seeds = append(seeds, b.build(dirNode("", &node{name: "x", data: []byte("x"), su: suCE(ce, 0, len(long))}), true, false))

	self := dirNode("self")
	a := dirNode("a", self)
	img := newBuilder().build(dirNode("", a), true, false)
	putBoth32At(img, int64(self.recOff[0])+2, uint32(a.lba))
	seeds = append(seeds, img)

	big := &node{name: "big", data: pattern(2 * sectorSize), sections: 2}
	img = newBuilder().build(dirNode("", big), false, false)
	img[big.recOff[1]+25] |= flagMultiExtent
	seeds = append(seeds, img)
	return seeds
}

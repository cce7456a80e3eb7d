package dehydrate

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/erofsprecomp"
	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/iso"
	"github.com/rehydrator/rehydrator/lzmarepro"
	"github.com/rehydrator/rehydrator/precomp"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// initrdISO makes an ISO like the live one in small: rootfs.img (a newc cpio of an EROFS
// image, LZMA clusters; with squash, of a squashfs of zstd blocks as before Fedora 42) after
// images/pxeboot/initrd.img, which is an xz newc cpio with a gzip -9 one appended (the
// fixture's shape) or, with whole, one gzip -9 cpio (a real release's). It returns the ISO's
// path.
func initrdISO(t *testing.T, whole, squash bool) string {
	t.Helper()
	bin := os.Getenv("EROFS_UTILS_BIN")
	if bin == "" {
		bin = "/var/cache/rehydrator-tools/erofs-utils-1.8.6/bin"
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	r := rand.New(rand.NewPCG(11, 12))
	words := strings.Fields("usr lib modules dracut systemd ignition coreos live initramfs the of and a to in kernel cpio")
	for i := range 40 {
		p := filepath.Join(tree, fmt.Sprintf("usr/lib/m%02d.txt", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		for n := 1 + r.IntN(20000); b.Len() < n; {
			b.WriteString(words[r.IntN(len(words))] + " ")
		}
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pxe := filepath.Join(dir, "iso", "images", "pxeboot")
	if err := os.MkdirAll(pxe, 0o755); err != nil {
		t.Fatal(err)
	}
	root := "root.erofs"
	if squash {
		root = "root.squashfs"
		runIn(t, dir, "mksquashfs", tree, root, "-comp", "zstd", "-noappend", "-quiet", "-no-progress", "-mkfs-time", "1700000000", "-all-time", "1700000000")
	} else {
		runIn(t, dir, filepath.Join(bin, "mkfs.erofs"), "--quiet", "-T1700000000", "-U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f",
			"-zlzma,level=6", "-Efragments", "-C1048576", root, tree)
	}
	sh := func(script string) {
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	sh("echo " + root + " | cpio -o -H newc -R root:root --reproducible --quiet > iso/images/pxeboot/rootfs.img")
	list := "cd tree && find . | LC_ALL=C sort | cpio -o -H newc -R root:root --reproducible --quiet"
	if whole {
		sh("(" + list + ") | gzip -9 -n > iso/images/pxeboot/initrd.img")
	} else {
		sh("(" + list + ") | xz --check=crc32 > iso/images/pxeboot/initrd.img && (" + list + " | head -c 30000) | gzip -9 >> iso/images/pxeboot/initrd.img")
	}
	if err := os.WriteFile(filepath.Join(pxe, "vmlinuz"), bytes.Repeat([]byte{0x1f, 0x8b, 8, 0, 1, 2}, 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	isoPath := filepath.Join(dir, "live.iso")
	runIn(t, dir, "genisoimage", "-quiet", "-rational-rock", "-J", "-joliet-long", "-V", "fedora-coreos", "-o", isoPath, filepath.Join(dir, "iso"))
	return isoPath
}

// The initramfs's gzip stream is found through the ISO's directory (after the xz stream when
// there is one), expanded to the cpio inside the EROFS-expanded stream, and gzip-spans then
// erofs-restore write the ISO again bit for bit.
func TestInitrdInISO(t *testing.T) {
	for _, whole := range []bool{false, true} {
		t.Run(fmt.Sprintf("whole=%v", whole), func(t *testing.T) {
			isoPath := initrdISO(t, whole, false)
			f, size, err := openSized(isoPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			spans, err := findEROFS(f, size)
			if err != nil || len(spans) != 1 {
				t.Fatalf("EROFS images %+v (%v), want one", spans, err)
			}
			plan, err := erofsprecomp.Scan(io.NewSectionReader(f, spans[0].Offset, spans[0].Size), spans[0].Size, 2)
			if err != nil {
				t.Fatal(err)
			}
			if lzmarepro.Version() != "" && len(plan.Clusters) == 0 {
				t.Fatal("no cluster of the image reproduces")
			}
			images := []erofsImage{{offset: spans[0].Offset, size: spans[0].Size, plan: plan}}
			dir := t.TempDir()
			gz, err := initrdAfterEROFS(context.Background(), f, size, images, dir, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			defer gz.close()
			want := checkInitrdSpan(t, f, size, gz, whole)

			var x bytes.Buffer
			sw := gz.writer(&x)
			p, xsize, err := expandEROFS(sw, f, size, images)
			if err != nil {
				t.Fatal(err)
			}
			if err := sw.finish(); err != nil {
				t.Fatal(err)
			}
			if xsize += gz.growth(); int64(x.Len()) != xsize {
				t.Fatalf("expanded %d bytes, want %d", x.Len(), xsize)
			}
			if !bytes.Contains(x.Bytes(), want) {
				t.Fatal("the expanded stream does not hold the initramfs's cpio")
			}
			st, b, err := gz.step(dir)
			if err != nil {
				t.Fatal(err)
			}
			pj, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			xPath := filepath.Join(dir, "expanded")
			if err := os.WriteFile(xPath, x.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(x.Bytes())
			digest := "sha256:" + hex.EncodeToString(sum[:])
			steps := []rehydrate.Step{{Op: rehydrate.OpBlob, Blob: digest}, st, {Op: rehydrate.OpEROFS, Params: pj}}
			var out bytes.Buffer
			blobs := LocalBlobs{digest: xPath, b.digest: b.path}
			if _, err := rehydrate.Run(context.Background(), blobs, []rehydrate.Blob{{Digest: digest, Size: xsize}, {Digest: b.digest, Size: b.size}}, steps, &out); err != nil {
				t.Fatal(err)
			}
			orig, err := os.ReadFile(isoPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), orig) {
				t.Fatalf("gzip-spans and erofs-restore wrote %d bytes that differ from the %d of the ISO", out.Len(), len(orig))
			}
		})
	}
}

// checkInitrdSpan checks that gz holds one span, the gzip stream of the ISO's initrd.img (all
// of it when whole, else what follows its xz stream), and that its plain data is what gunzip
// gives, which it returns.
func checkInitrdSpan(t *testing.T, f io.ReaderAt, size int64, gz *initrdExpansion, whole bool) []byte {
	t.Helper()
	if gz == nil || len(gz.spans) != 1 {
		t.Fatalf("initramfs spans %+v, want one", gz)
	}
	img, err := iso.Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	initrd, err := img.Lookup("/images/pxeboot/initrd.img")
	if err != nil {
		t.Fatal(err)
	}
	s := gz.spans[0]
	if s.at+s.size != initrd.Offset+initrd.Size || (whole && s.at != initrd.Offset) || (!whole && s.at == initrd.Offset) {
		t.Fatalf("span at %d, %d bytes; initrd.img at %d, %d bytes", s.at, s.size, initrd.Offset, initrd.Size)
	}
	zr, err := gzip.NewReader(io.NewSectionReader(f, s.at, s.size))
	if err != nil {
		t.Fatal(err)
	}
	want, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(io.NewSectionReader(s.plain, 0, s.plainSize))
	if err != nil || !bytes.Equal(plain, want) {
		t.Fatalf("plain data: %d bytes (%v), gunzip gives %d", len(plain), err, len(want))
	}
	return want
}

// The squashfs era's route: the initramfs expanded inside precomp's stream, the file map's
// expansion told of it (the squashfs after it moves by its growth), and gzip-spans then
// zstd-restore write the ISO again bit for bit.
func TestInitrdInPrecompISO(t *testing.T) {
	isoPath := initrdISO(t, true, true)
	f, size, err := openSized(isoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	plan, err := precomp.Scan(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if precomp.Version() != "" && len(plan.Frames) == 0 {
		t.Fatal("no zstd frame of the squashfs reproduces")
	}
	dir := t.TempDir()
	gz, err := initrdAfterPrecomp(context.Background(), f, size, plan, dir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer gz.close()
	want := checkInitrdSpan(t, f, size, gz, true)
	var x bytes.Buffer
	sw := gz.writer(&x)
	if err := precomp.Expand(sw, f, size, plan); err != nil {
		t.Fatal(err)
	}
	if err := sw.finish(); err != nil {
		t.Fatal(err)
	}
	xsize := plan.ExpandedSize(size) + gz.growth()
	if int64(x.Len()) != xsize || !bytes.Equal(x.Bytes()[gz.spans[0].expandedAt:][:len(want)], want) {
		t.Fatalf("expanded %d bytes (want %d), the cpio not at %d", x.Len(), xsize, gz.spans[0].expandedAt)
	}
	// The file map's expansion puts the squashfs's bytes (after the initramfs) where they are.
	exp, err := precompExpansion(plan, size, gz)
	if err != nil {
		t.Fatal(err)
	}
	sq, sqSize, err := findSquashfs(f, size)
	if err != nil || sqSize == 0 || sq < gz.spans[0].at+gz.spans[0].size {
		t.Fatalf("squashfs at %d, %d bytes (%v); want one after the initramfs", sq, sqSize, err)
	}
	head := make([]byte, 96)
	if _, err := f.ReadAt(head, sq); err != nil {
		t.Fatal(err)
	}
	at := exp.Locate([]filemap.Piece{{Length: 96, Offset: sq}}, 0)
	if len(at) != 1 || !bytes.Equal(x.Bytes()[at[0].Offset:][:96], head) {
		t.Fatalf("the squashfs's superblock located at %+v, not where the expanded stream has it", at)
	}

	st, b, err := gz.step(dir)
	if err != nil {
		t.Fatal(err)
	}
	xPath := filepath.Join(dir, "expanded")
	if err := os.WriteFile(xPath, x.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(x.Bytes())
	digest := "sha256:" + hex.EncodeToString(sum[:])
	steps := []rehydrate.Step{{Op: rehydrate.OpBlob, Blob: digest}, st, {Op: rehydrate.OpZstdRestore}}
	var out bytes.Buffer
	blobs := LocalBlobs{digest: xPath, b.digest: b.path}
	if _, err := rehydrate.Run(context.Background(), blobs, []rehydrate.Blob{{Digest: digest, Size: xsize}, {Digest: b.digest, Size: b.size}}, steps, &out); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(isoPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), orig) {
		t.Fatalf("gzip-spans and zstd-restore wrote %d bytes that differ from the %d of the ISO", out.Len(), len(orig))
	}
}

// Not an ISO, no initramfs, an initramfs without gzip, or with a false gzip magic: nothing.
func TestInitrdNone(t *testing.T) {
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		"empty": nil,
		"zeros": make([]byte, 1<<16),
		"magic": append(bytes.Repeat([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, 3000), 0xff),
	} {
		gz, err := initrdAfterEROFS(context.Background(), bytes.NewReader(b), int64(len(b)), nil, dir, t.Logf)
		if err != nil || gz != nil {
			t.Errorf("%s: %+v, %v; want nothing", name, gz, err)
		}
		if s, err := splitInitrd(context.Background(), bytes.NewReader(b), iso.Extent{Size: int64(len(b))}, nil, dir); err != nil || s != nil {
			t.Errorf("%s: split %+v, %v; want nothing", name, s, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".initrd-plain-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

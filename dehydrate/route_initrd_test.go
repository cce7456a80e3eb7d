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
	"github.com/rehydrator/rehydrator/iso"
	"github.com/rehydrator/rehydrator/lzmarepro"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// initrdISO makes an ISO like the live one in small: rootfs.img (a newc cpio of an EROFS
// image, LZMA clusters) before or after images/pxeboot/initrd.img, which is an xz newc cpio
// with a gzip -9 one appended (the fixture's shape) or, with whole, one gzip -9 cpio (a real
// release's). It returns the ISO's path.
func initrdISO(t *testing.T, whole bool) string {
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
	runIn(t, dir, filepath.Join(bin, "mkfs.erofs"), "--quiet", "-T1700000000", "-U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f",
		"-zlzma,level=6", "-Efragments", "-C1048576", filepath.Join(dir, "root.erofs"), tree)
	sh := func(script string) {
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	sh("echo root.erofs | cpio -o -H newc -R root:root --reproducible --quiet > iso/images/pxeboot/rootfs.img")
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
			isoPath := initrdISO(t, whole)
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
			gz, err := expandInitrd(context.Background(), f, size, images, dir, t.Logf)
			if err != nil {
				t.Fatal(err)
			}
			if gz == nil || len(gz.spans) != 1 {
				t.Fatalf("initramfs spans %+v, want one", gz)
			}
			defer gz.close()
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
			// The plain data is what gunzip gives.
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

// Not an ISO, no initramfs, an initramfs without gzip, or with a false gzip magic: nothing.
func TestInitrdNone(t *testing.T) {
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		"empty": nil,
		"zeros": make([]byte, 1<<16),
		"magic": append(bytes.Repeat([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, 3000), 0xff),
	} {
		gz, err := expandInitrd(context.Background(), bytes.NewReader(b), int64(len(b)), nil, dir, t.Logf)
		if err != nil || gz != nil {
			t.Errorf("%s: %+v, %v; want nothing", name, gz, err)
		}
		if s, err := splitInitrd(context.Background(), bytes.NewReader(b), iso.Extent{Size: int64(len(b))}, dir); err != nil || s != nil {
			t.Errorf("%s: split %+v, %v; want nothing", name, s, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".initrd-plain-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

package dehydrate

import (
	"bytes"
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

func runIn(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// liveLikeISO makes the live ISO's shape in small: root.erofs (mkfs.erofs -zlzma,level=6
// -Efragments -C1048576) and an xz file in a newc cpio (images/pxeboot/rootfs.img), beside a
// kernel-like file, in an ISO made by genisoimage. It returns the ISO's path and the EROFS
// image's bytes.
func liveLikeISO(t *testing.T) (string, []byte) {
	t.Helper()
	bin := os.Getenv("EROFS_UTILS_BIN")
	if bin == "" {
		bin = "/var/cache/rehydrator-tools/erofs-utils-1.8.6/bin"
	}
	mkfs := filepath.Join(bin, "mkfs.erofs")
	if _, err := os.Stat(mkfs); err != nil {
		t.Fatalf("%s missing (%v): run scripts/build-erofs-utils.sh or set EROFS_UTILS_BIN", mkfs, err)
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	r := rand.New(rand.NewPCG(44, 12))
	words := strings.Fields("usr lib share locale python perl module the of and a to in erofs cluster file data")
	for i := range 80 {
		var b bytes.Buffer
		for n := 1 + r.IntN(12000); b.Len() < n; {
			b.WriteString(words[r.IntN(len(words))] + " ")
		}
		p := filepath.Join(tree, fmt.Sprintf("d%d/f%02d.txt", i%5, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cpioDir := filepath.Join(dir, "cpio")
	if err := os.MkdirAll(cpioDir, 0o755); err != nil {
		t.Fatal(err)
	}
	runIn(t, dir, mkfs, "--quiet", "-T1700000000", "-U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f", "-zlzma,level=6", "-Efragments", "-C1048576",
		filepath.Join(cpioDir, "root.erofs"), tree)
	if err := os.WriteFile(filepath.Join(cpioDir, "metal.osmet"), bytes.Repeat([]byte("osmet "), 3000), 0o644); err != nil {
		t.Fatal(err)
	}
	runIn(t, cpioDir, "xz", "-1", "metal.osmet")
	isoTree := filepath.Join(dir, "iso", "images", "pxeboot")
	if err := os.MkdirAll(isoTree, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "printf 'root.erofs\\nmetal.osmet.xz\\n' | cpio -o -H newc -R root:root --reproducible --quiet > "+filepath.Join(isoTree, "rootfs.img"))
	cmd.Dir = cpioDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	kernel := make([]byte, 70000)
	for i := range kernel {
		kernel[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(filepath.Join(isoTree, "vmlinuz"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	isoPath := filepath.Join(dir, "live.iso")
	runIn(t, dir, "genisoimage", "-quiet", "-rational-rock", "-J", "-joliet-long", "-V", "fedora-coreos", "-o", isoPath, filepath.Join(dir, "iso"))
	img, err := os.ReadFile(filepath.Join(cpioDir, "root.erofs"))
	if err != nil {
		t.Fatal(err)
	}
	return isoPath, img
}

// The route finds root.erofs inside the ISO's rootfs.img cpio, and the erofs-restore step
// writes the ISO again from the expanded stream, bit for bit.
func TestEROFSInISO(t *testing.T) {
	isoPath, img := liveLikeISO(t)
	f, size, err := openSized(isoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spans, err := findEROFS(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 || spans[0].Size != int64(len(img)) {
		t.Fatalf("found EROFS images %+v, want one of %d bytes", spans, len(img))
	}
	got := make([]byte, spans[0].Size)
	if _, err := f.ReadAt(got, spans[0].Offset); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("the image found at %d is not root.erofs (%v)", spans[0].Offset, err)
	}
	// The PXE rootfs (the cpio alone) has it too, at the cpio's offset.
	isoImg, err := iso.Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	rootfs, err := isoImg.Lookup("/images/pxeboot/rootfs.img")
	if err != nil {
		t.Fatal(err)
	}
	if in := cpioEROFS(f, rootfs.Offset, rootfs.Size); len(in) != 1 || in[0] != spans[0] {
		t.Fatalf("the cpio walk finds %+v, want %+v", in, spans)
	}

	plan, err := erofsprecomp.Scan(io.NewSectionReader(f, spans[0].Offset, spans[0].Size), spans[0].Size, 2)
	if err != nil {
		t.Fatal(err)
	}
	if lzmarepro.Version() != "" && len(plan.Clusters) == 0 {
		t.Fatal("no cluster of the image reproduces")
	}
	var x bytes.Buffer
	p, xsize, err := expandEROFS(&x, f, size, []erofsImage{{offset: spans[0].Offset, size: spans[0].Size, plan: plan}})
	if err != nil {
		t.Fatal(err)
	}
	if int64(x.Len()) != xsize {
		t.Fatalf("expanded %d bytes, expandEROFS says %d", x.Len(), xsize)
	}
	pj, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	blobPath := filepath.Join(t.TempDir(), "expanded")
	if err := os.WriteFile(blobPath, x.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(x.Bytes())
	digest := "sha256:" + hex.EncodeToString(sum[:])
	var out bytes.Buffer
	steps := []rehydrate.Step{{Op: rehydrate.OpBlob, Blob: digest}, {Op: rehydrate.OpEROFS, Params: pj}}
	if _, err := rehydrate.Run(context.Background(), LocalBlobs{digest: blobPath}, []rehydrate.Blob{{Digest: digest, Size: xsize}}, steps, &out); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(isoPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("erofs-restore wrote %d bytes that differ from the %d of the ISO", out.Len(), len(want))
	}
}

// Files that are neither EROFS nor a cpio nor an ISO hold no images; a cpio that lies about a
// member's size ends the walk without an error.
func TestFindEROFSNone(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":        nil,
		"zeros":        make([]byte, 1<<16),
		"cpio garbage": append([]byte("070701"), bytes.Repeat([]byte("Z"), 300)...),
		"cpio too long": append([]byte("070701"+strings.Repeat("0", 8*6)+"7fffffff"+strings.Repeat("0", 8*4)+"00000002"+"00000000"),
			[]byte("a\x00")...),
	} {
		spans, err := findEROFS(bytes.NewReader(b), int64(len(b)))
		if err != nil || len(spans) != 0 {
			t.Errorf("%s: %+v, %v; want nothing", name, spans, err)
		}
	}
}

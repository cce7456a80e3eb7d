package ociarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func sh(t testing.TB, dir, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 5))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// pyJSON formats like Python's json.dump, which osbuild's stage uses:
// ", " and ": " separators, no newline at the end.
func pyJSON(v any) []byte {
	b, _ := json.Marshal(v)
	var out bytes.Buffer
	inStr, esc := false, false
	for _, c := range b {
		out.WriteByte(c)
		switch {
		case esc:
			esc = false
		case c == '\\' && inStr:
			esc = true
		case c == '"':
			inStr = !inStr
		case !inStr && (c == ',' || c == ':'):
			out.WriteByte(' ')
		}
	}
	return out.Bytes()
}

// osbuildOCIArchive makes an .ociarchive the way osbuild's
// org.osbuild.oci-archive stage does (its tar and gzip commands, its JSON),
// around a tree holding /disk/<name> as kubevirt's pipeline does.
func osbuildOCIArchive(t testing.TB, dir string, disk []byte, epoch int64) []byte {
	tree := filepath.Join(dir, "tree", "disk")
	blobs := filepath.Join(dir, "out", "blobs", "sha256")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(blobs, 0o755)
	if err := os.WriteFile(filepath.Join(tree, "fedora-coreos-kubevirt.x86_64.qcow2"), disk, 0o644); err != nil {
		t.Fatal(err)
	}
	// blobs_add_layer: a posix tar of the tree, then gzip -S .compressed.
	sh(t, dir, `tar --sort=name --no-selinux --acls --xattrs '--xattrs-include=^(user.|security\.ima|security\.capability)' --format=posix --pax-option delete=atime,delete=ctime -cf out/blobs/sha256/layer.tar -C tree disk
sha256sum out/blobs/sha256/layer.tar | cut -c1-64 > diffid
gzip -S .compressed out/blobs/sha256/layer.tar`)
	addBlob := func(path, mtype string) Descriptor {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		d := hex.EncodeToString(sum[:])
		if err := os.Rename(path, filepath.Join(blobs, d)); err != nil {
			t.Fatal(err)
		}
		return Descriptor{MediaType: mtype, Digest: "sha256:" + d, Size: int64(len(b))}
	}
	addJSON := func(v any, mtype string) Descriptor {
		p := filepath.Join(blobs, "temporary.js")
		os.WriteFile(p, pyJSON(v), 0o644)
		return addBlob(p, mtype)
	}
	layer := addBlob(filepath.Join(blobs, "layer.tar.compressed"), "application/vnd.oci.image.layer.v1.tar")
	layer.MediaType += "+gzip"
	diffid, _ := os.ReadFile(filepath.Join(dir, "diffid"))
	created := time.Unix(epoch, 0).UTC().Format("2006-01-02T15:04:05+00:00")
	type kv = map[string]any
	config := addJSON(kv{"created": created, "architecture": "amd64", "os": "linux",
		"config":  kv{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, "Cmd": []string{"sh"}},
		"rootfs":  kv{"type": "layers", "diff_ids": []string{"sha256:" + string(diffid[:64])}},
		"history": []kv{{"created": created, "created_by": "/bin/sh -c #(nop) osbuild input 'base'"}},
	}, "application/vnd.oci.image.config.v1+json")
	manifest := addJSON(kv{"schemaVersion": 2, "config": config, "layers": []Descriptor{layer}}, "application/vnd.oci.image.manifest.v1+json")
	os.WriteFile(filepath.Join(dir, "out", "index.json"), pyJSON(kv{"schemaVersion": 2, "manifests": []Descriptor{manifest}}), 0o644)
	os.WriteFile(filepath.Join(dir, "out", "oci-layout"), pyJSON(kv{"imageLayoutVersion": "1.0.0"}), 0o644)
	sh(t, dir, fmt.Sprintf(`tar --remove-files --sort=name --no-selinux --no-xattrs --no-acls --owner=0 --group=0 --numeric-owner --mode=go=rX,u+rw,a-s --format=posix --mtime=@%d --pax-option delete=atime,delete=ctime -cf kubevirt.ociarchive --directory=out $(ls out)`, epoch))
	b, err := os.ReadFile(filepath.Join(dir, "kubevirt.ociarchive"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// roundTrip checks Open against archive/tar, then Layout and Write.
func roundTrip(t *testing.T, b []byte, external []string) *Archive {
	t.Helper()
	a, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(b))
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			if i != len(a.Members) {
				t.Fatalf("archive/tar sees %d members, we see %d", i, len(a.Members))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(a.Members) || a.Members[i].Name != h.Name {
			t.Fatalf("member %d: archive/tar says %q", i, h.Name)
		}
		_, paxSparse := h.PAXRecords["GNU.sparse.major"]
		if h.Typeflag != tar.TypeGNUSparse && !paxSparse && a.Members[i].Size != h.Size {
			t.Fatalf("member %q: archive/tar says %d bytes, we %d", h.Name, h.Size, a.Members[i].Size)
		}
	}
	l, err := a.Layout(external...)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(l)
	var l2 Layout
	if err := json.Unmarshal(js, &l2); err != nil {
		t.Fatal(err)
	}
	var ext []io.Reader
	for _, n := range external {
		ext = append(ext, a.Data(a.Find(n)))
	}
	var out bytes.Buffer
	if err := Write(&out, &l2, ext...); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), b) {
		t.Fatal("Write did not reproduce the archive")
	}
	t.Logf("%d-byte archive, %d members, layout %d bytes as JSON", len(b), len(a.Members), len(js))
	return a
}

func TestOsbuildOCIArchive(t *testing.T) {
	dir := t.TempDir()
	disk := randomBytes(3<<20+123, 1)
	b := osbuildOCIArchive(t, dir, disk, 1700000000)
	a, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := a.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("layers %v", layers)
	}
	a = roundTrip(t, b, layers)
	names := []string{}
	for _, m := range a.Members {
		names = append(names, m.Name)
	}
	if !slices.IsSorted(names) || names[0] != "blobs/" || names[len(names)-1] != "oci-layout" {
		t.Fatalf("members %v", names)
	}

	// The layer, gunzipped, is a tar of /disk/*.qcow2: the same Layout keeps
	// it around the qcow2.
	zr, err := gzip.NewReader(a.Data(a.Find(layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	inner, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	ia := roundTrip(t, inner, []string{"disk/fedora-coreos-kubevirt.x86_64.qcow2"})
	q := ia.Find("disk/fedora-coreos-kubevirt.x86_64.qcow2")
	got, _ := io.ReadAll(ia.Data(q))
	if !bytes.Equal(got, disk) {
		t.Fatal("the layer's disk is not the qcow2")
	}
	l, _ := ia.Layout("disk/fedora-coreos-kubevirt.x86_64.qcow2")
	if err := Write(io.Discard, l, bytes.NewReader(disk[1:])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short external member: %v", err)
	}
	if err := Write(io.Discard, l); err == nil {
		t.Fatal("Write without the external member")
	}
}

func TestOtherTars(t *testing.T) {
	long := "a-directory-name-that-goes-on/" + string(bytes.Repeat([]byte("x"), 120)) + ".bin"
	cases := []struct{ name, script, ext string }{
		{"gnu long names", "tar --format=gnu -cf out.tar in", "in/" + long},
		{"posix long names", "tar --format=posix -cf out.tar in", "in/" + long},
		{"ustar prefix", "mkdir -p in/" + long[30:100] + " && echo hi > in/" + long[30:100] + "/" + long[30:90] + " && tar --format=ustar -cf out.tar in/small in/" + long[30:100], "in/" + long[30:100] + "/" + long[30:90]},
		{"oldgnu sparse", "truncate -s 20M in/sparse && echo data | dd of=in/sparse bs=1 seek=9000000 conv=notrunc 2>/dev/null && tar --format=oldgnu --sparse -cf out.tar in", ""},
		{"posix sparse", "truncate -s 20M in/sparse && echo data | dd of=in/sparse bs=1 seek=9000000 conv=notrunc 2>/dev/null && tar --format=posix --sparse -cf out.tar in", ""},
		{"ova-like ustar", "tar --owner=0 --group=0 -c --format=ustar -f out.tar in/small in/" + long[:60], ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			sub := filepath.Join(dir, "in", filepath.Dir(long))
			os.MkdirAll(sub, 0o755)
			os.WriteFile(filepath.Join(dir, "in", long), randomBytes(70000, 2), 0o644)
			os.WriteFile(filepath.Join(dir, "in", "small"), []byte("small\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "in", long[:60]), []byte("short name\n"), 0o644)
			sh(t, dir, c.script)
			b, err := os.ReadFile(filepath.Join(dir, "out.tar"))
			if err != nil {
				t.Fatal(err)
			}
			var ext []string
			if c.ext != "" {
				ext = []string{c.ext}
			}
			roundTrip(t, b, ext)
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	b := osbuildOCIArchive(t, dir, randomBytes(5000, 3), 1)
	mut := func(f func(b []byte)) []byte { c := bytes.Clone(b); f(c); return c }
	a, _ := Open(bytes.NewReader(b), int64(len(b)))
	last := a.Members[len(a.Members)-1]
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrNotTar},
		{"not tar", bytes.Repeat([]byte("not a tar "), 100), ErrNotTar},
		{"bad checksum", mut(func(b []byte) { b[1024+5]++ }), ErrFormat},
		{"truncated", b[:last.DataOff+10], ErrFormat},
		{"no end", b[:last.DataOff+512], ErrFormat},
		{"padding", mut(func(b []byte) { b[last.DataOff+last.Size+3] = 1 }), ErrUnsupported},
		{"trailer", mut(func(b []byte) { b[len(b)-1] = 1 }), ErrUnsupported},
	}
	for _, c := range cases {
		_, err := Open(bytes.NewReader(c.b), int64(len(c.b)))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	if _, err := a.Layout("no/such/member"); err == nil {
		t.Fatal("Layout accepted a missing external member")
	}
}

// FuzzOpen opens arbitrary bytes: never a panic. When Layout accepts them
// (the OCI layers, if any, external), Write must give them back.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	f.Add(osbuildOCIArchive(f, filepath.Join(dir, "a"), randomBytes(700, 4), 5))
	os.MkdirAll(filepath.Join(dir, "b", "in"), 0o755)
	os.WriteFile(filepath.Join(dir, "b", "in", string(bytes.Repeat([]byte("n"), 150))), []byte("x"), 0o644)
	sh(f, filepath.Join(dir, "b"), "tar --format=gnu -cf gnu.tar in && tar --format=posix -cf posix.tar in")
	for _, n := range []string{"gnu.tar", "posix.tar"} {
		b, _ := os.ReadFile(filepath.Join(dir, "b", n))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Open(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		ext, err := a.Layers()
		if err != nil {
			ext = nil
		}
		l, err := a.Layout(ext...)
		if err != nil {
			return
		}
		var rs []io.Reader
		for _, n := range ext {
			rs = append(rs, a.Data(a.Find(n)))
		}
		var out bytes.Buffer
		if err := Write(&out, l, rs...); err != nil {
			t.Fatalf("Write: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatal("Write did not give back the archive")
		}
	})
}

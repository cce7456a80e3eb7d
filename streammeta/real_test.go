package streammeta

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// realStreams are Fedora CoreOS stream files as published (coreos/fedora-coreos-streams).
func realStreams(t testing.TB) map[string][]byte {
	paths, err := filepath.Glob("testdata/*.json")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no stream files in testdata: %v", err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

// expected walks the document generically, independently of Parse: every file it names, with
// the name and checksum rule the rules of issue 10 give it.
func expected(t *testing.T, raw []byte) map[string]Artifact {
	var doc struct {
		Architectures map[string]struct {
			Artifacts map[string]struct {
				Formats map[string]map[string]map[string]string `json:"formats"`
			} `json:"artifacts"`
		} `json:"architectures"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]Artifact{}
	for arch, a := range doc.Architectures {
		for platform, pa := range a.Artifacts {
			for format, kinds := range pa.Formats {
				for kind, f := range kinds {
					shipped := f["location"][strings.LastIndex(f["location"], "/")+1:]
					e := Artifact{Arch: arch, Platform: platform, Format: format, Kind: kind, ShippedName: shipped,
						Name: shipped, SHA256: f["sha256"], UncompressedSHA256: f["sha256"], Signature: f["signature"]}
					if u := f["uncompressed-sha256"]; u != "" {
						ext := filepath.Ext(shipped)
						e.Name, e.UncompressedSHA256 = strings.TrimSuffix(shipped, ext), u
						e.Compression = map[string]string{".xz": "xz", ".gz": "gzip", ".zip": "zip"}[ext]
					}
					out[e.ID()] = e
				}
			}
		}
	}
	return out
}

func TestRealStreams(t *testing.T) {
	for name, raw := range realStreams(t) {
		t.Run(name, func(t *testing.T) {
			rel, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(rel.Raw, raw) {
				t.Fatal("Raw is not the document as shipped")
			}
			want := expected(t, raw)
			if len(rel.Artifacts) != len(want) {
				t.Fatalf("%d artifacts, the document names %d files", len(rel.Artifacts), len(want))
			}
			arches := map[string]int{}
			for _, a := range rel.Artifacts {
				w, ok := want[a.ID()]
				if !ok {
					t.Fatalf("%s: not in the document", a.ID())
				}
				if a.ShippedName != w.ShippedName || a.Name != w.Name || a.Compression != w.Compression ||
					a.SHA256 != w.SHA256 || a.UncompressedSHA256 != w.UncompressedSHA256 || a.Signature != w.Signature {
					t.Errorf("%s:\n got %+v\nwant %+v", a.ID(), a, w)
				}
				if a.Signature != a.Location+".sig" {
					t.Errorf("%s: signature %q is not location+.sig", a.ID(), a.Signature)
				}
				if a.Compression != "" && a.Compression != "xz" && a.Compression != "gzip" && a.Compression != "zip" {
					t.Errorf("%s: compression %q", a.ID(), a.Compression)
				}
				arches[a.Arch]++
			}
			var got []string
			for a := range arches {
				got = append(got, a)
			}
			sort.Strings(got)
			if strings.Join(got, " ") != "aarch64 ppc64le s390x x86_64" || strings.Join(rel.Arches(), " ") != "aarch64 ppc64le s390x x86_64" {
				t.Errorf("architectures %v / %v", got, rel.Arches())
			}
			for _, a := range rel.Arches() {
				if len(rel.Stream.Architectures[a].Artifacts) == 0 {
					t.Errorf("%s: upstream view has no artifacts", a)
				}
			}
		})
	}
}

// TestRealStreamRules pins the cases issue 10 names, in both real streams.
func TestRealStreamRules(t *testing.T) {
	streams := realStreams(t)
	cases := []struct {
		stream, id, name, rule, comp string
	}{
		{"stable-44.20260707.3.1.json", "x86_64/hyperv/vhdx.zip/disk", "fedora-coreos-44.20260707.3.1-hyperv.x86_64.vhdx", RuleUncompressed, "zip"},
		{"stable-44.20260707.3.1.json", "x86_64/gcp/tar.gz/disk", "fedora-coreos-44.20260707.3.1-gcp.x86_64.tar.gz", RuleShipped, ""},
		{"stable-44.20260707.3.1.json", "aarch64/gcp/tar.gz/disk", "fedora-coreos-44.20260707.3.1-gcp.aarch64.tar.gz", RuleShipped, ""},
		{"stable-44.20260707.3.1.json", "x86_64/nutanix/qcow2/disk", "fedora-coreos-44.20260707.3.1-nutanix.x86_64.qcow2", RuleShipped, ""},
		{"stable-44.20260707.3.1.json", "x86_64/vmware/ova/disk", "fedora-coreos-44.20260707.3.1-vmware.x86_64.ova", RuleShipped, ""},
		{"stable-44.20260707.3.1.json", "x86_64/virtualbox/ova/disk", "fedora-coreos-44.20260707.3.1-virtualbox.x86_64.ova", RuleShipped, ""},
		{"stable-44.20260707.3.1.json", "s390x/kubevirt/ociarchive/disk", "fedora-coreos-44.20260707.3.1-kubevirt.s390x.ociarchive", RuleShipped, ""},
		{"stable-44.20260707.3.1.json", "x86_64/metal/iso/disk", "fedora-coreos-44.20260707.3.1-live-iso.x86_64.iso", RuleShipped, ""},
		{"stable-44.20260707.3.1.json", "x86_64/metal/pxe/kernel", "fedora-coreos-44.20260707.3.1-live-kernel.x86_64", RuleShipped, ""},
		{"stable-44.20260707.3.1.json", "ppc64le/metal/pxe/rootfs", "fedora-coreos-44.20260707.3.1-live-rootfs.ppc64le.img", RuleShipped, ""},
		{"stable-44.20260707.3.1.json", "ppc64le/powervs/ova.gz/disk", "fedora-coreos-44.20260707.3.1-powervs.ppc64le.ova", RuleUncompressed, "gzip"},
		{"stable-44.20260707.3.1.json", "x86_64/applehv/raw.gz/disk", "fedora-coreos-44.20260707.3.1-applehv.x86_64.raw", RuleUncompressed, "gzip"},
		{"stable-44.20260707.3.1.json", "x86_64/metal/4k.raw.xz/disk", "fedora-coreos-44.20260707.3.1-metal4k.x86_64.raw", RuleUncompressed, "xz"},
		{"stable-40.20240416.3.1.json", "x86_64/gcp/tar.gz/disk", "fedora-coreos-40.20240416.3.1-gcp.x86_64.tar", RuleUncompressed, "gzip"},
		{"stable-40.20240416.3.1.json", "aarch64/hyperv/vhdx.zip/disk", "fedora-coreos-40.20240416.3.1-hyperv.aarch64.vhdx", RuleUncompressed, "zip"},
	}
	rels := map[string]*Release{}
	for _, c := range cases {
		rel := rels[c.stream]
		if rel == nil {
			var err error
			if rel, err = Parse(streams[c.stream]); err != nil {
				t.Fatal(err)
			}
			rels[c.stream] = rel
		}
		a, ok := rel.Find(c.id)
		if !ok {
			t.Errorf("%s: no %s", c.stream, c.id)
			continue
		}
		if a.Name != c.name || a.Rule() != c.rule || a.Compression != c.comp {
			t.Errorf("%s %s: name %q rule %s compression %q; want %q %s %q", c.stream, c.id, a.Name, a.Rule(), a.Compression, c.name, c.rule, c.comp)
		}
		if c.rule == RuleShipped && (a.UncompressedSHA256 != a.SHA256 || a.Name != a.ShippedName) {
			t.Errorf("%s: shipped as is but %+v", c.id, a)
		}
	}
}

// TestRules is the rule table on made-up entries: which checksum judges the output and its name.
func TestRules(t *testing.T) {
	h, u := strings.Repeat("ab", 32), strings.Repeat("cd", 32)
	for _, c := range []struct {
		name, file, sha, usha string
		wantName, rule, comp  string
		wantUSHA              string
	}{
		{"xz with uncompressed", "a.qcow2.xz", h, u, "a.qcow2", RuleUncompressed, "xz", u},
		{"gz with uncompressed", "a.raw.gz", h, u, "a.raw", RuleUncompressed, "gzip", u},
		{"zip with uncompressed", "a.vhdx.zip", h, u, "a.vhdx", RuleUncompressed, "zip", u},
		{"tar.gz sha256 only", "a.tar.gz", h, "", "a.tar.gz", RuleShipped, "", h},
		{"xz sha256 only", "a.raw.xz", h, "", "a.raw.xz", RuleShipped, "", h},
		{"plain sha256 only", "a.ova", h, "", "a.ova", RuleShipped, "", h},
		{"plain equal sums", "a.qcow2", h, h, "a.qcow2", RuleShipped, "", h},
		{"upper case hex", "a.qcow2.xz", strings.ToUpper(h), strings.ToUpper(u), "a.qcow2", RuleUncompressed, "xz", u},
		{"unknown wrapper kept as shipped", "a.raw.zst", h, u, "a.raw.zst", RuleShipped, "", h},
		{"bare suffix is a name", ".gz", h, u, ".gz", RuleShipped, "", h},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := `{"architectures":{"riscv64":{"artifacts":{"newcloud":{"formats":{"weird":{"disk":{"location":"https://x/` +
				c.file + `","sha256":"` + c.sha + `","uncompressed-sha256":"` + c.usha + `"}}}}}}}}`
			rel, err := Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			a := rel.Artifacts[0]
			if a.Name != c.wantName || a.Rule() != c.rule || a.Compression != c.comp || a.UncompressedSHA256 != c.wantUSHA {
				t.Errorf("got name %q rule %s compression %q usha %s", a.Name, a.Rule(), a.Compression, a.UncompressedSHA256)
			}
			if a.ID() != "riscv64/newcloud/weird/disk" || a.DiskName() != "newcloud" {
				t.Errorf("unknown platform not kept: %s %q", a.ID(), a.DiskName())
			}
		})
	}
	// A kind this program does not know is kept too.
	rel, err := Parse([]byte(`{"architectures":{"x86_64":{"artifacts":{"metal":{"formats":{"pxe":{"kernel":{"location":"https://x/k","sha256":"` + h + `"},"manifest":{"location":"https://x/m.json","sha256":"` + u + `"}}}}}}}}`))
	if err != nil || len(rel.Artifacts) != 2 || rel.Artifacts[0].Kind != "kernel" || rel.Artifacts[1].Kind != "manifest" {
		t.Fatalf("unknown kind: %v %+v", err, rel)
	}
	// Bad hex in uncompressed-sha256 is still refused.
	if _, err := Parse([]byte(`{"architectures":{"x86_64":{"artifacts":{"qemu":{"formats":{"qcow2.xz":{"disk":{"location":"https://x/q.qcow2.xz","sha256":"` + h + `","uncompressed-sha256":"xyz"}}}}}}}}`)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "uncompressed-sha256") {
		t.Fatalf("bad uncompressed-sha256: %v", err)
	}
}

func TestOnlyArch(t *testing.T) {
	for name, raw := range realStreams(t) {
		rel, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, arch := range rel.Arches() {
			one, err := rel.OnlyArch(arch)
			if err != nil {
				t.Fatalf("%s %s: %v", name, arch, err)
			}
			sub, err := Parse(one)
			if err != nil {
				t.Fatalf("%s %s: pruned document: %v", name, arch, err)
			}
			if strings.Join(sub.Arches(), " ") != arch {
				t.Fatalf("%s %s: pruned document has %v", name, arch, sub.Arches())
			}
			var n int
			for _, a := range rel.Artifacts {
				if a.Arch == arch {
					if b, ok := sub.Find(a.ID()); !ok || b != a {
						t.Errorf("%s: %s lost or changed", name, a.ID())
					}
					n++
				}
			}
			if n != len(sub.Artifacts) {
				t.Errorf("%s %s: %d artifacts, want %d", name, arch, len(sub.Artifacts), n)
			}
			// Every byte of the kept architecture, images section included, is the shipped one,
			// and what stands around the architectures object too.
			var doc, subDoc map[string]json.RawMessage
			json.Unmarshal(raw, &doc)
			json.Unmarshal(one, &subDoc)
			var archs, subArchs map[string]json.RawMessage
			json.Unmarshal(doc["architectures"], &archs)
			json.Unmarshal(subDoc["architectures"], &subArchs)
			if !bytes.Equal(archs[arch], subArchs[arch]) || !bytes.Contains(subArchs[arch], []byte(`"images"`)) {
				t.Errorf("%s %s: the architecture's text changed", name, arch)
			}
			i := bytes.Index(raw, []byte(`"architectures"`))
			if !bytes.Equal(one[:i], raw[:i]) {
				t.Errorf("%s %s: text before architectures changed", name, arch)
			}
			// Pruning a document of one architecture gives it back unchanged.
			if again, err := sub.OnlyArch(arch); err != nil || !bytes.Equal(again, one) {
				t.Errorf("%s %s: pruning twice changed the document: %v", name, arch, err)
			}
		}
		if _, err := rel.OnlyArch("mips"); !errors.Is(err, ErrInvalid) {
			t.Errorf("unknown arch: %v", err)
		}
	}
}

func zipOf(t *testing.T, members map[string][]byte, method uint16) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var names []string
	for n := range members {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(members[n])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDecompressZip(t *testing.T) {
	dir := t.TempDir()
	content := bytes.Repeat([]byte("vhdxfile"), 50000)
	for _, c := range []struct {
		name    string
		members map[string][]byte
		method  uint16
		want    error
	}{
		{"deflated", map[string][]byte{"a.vhdx": content}, zip.Deflate, nil},
		{"stored", map[string][]byte{"a.vhdx": content}, zip.Store, nil},
		{"two members", map[string][]byte{"a.vhdx": content, "b": []byte("x")}, zip.Deflate, ErrZipMembers},
		{"empty", map[string][]byte{}, zip.Deflate, ErrZipMembers},
		{"a directory", map[string][]byte{"d/": nil}, zip.Store, ErrZipMembers},
	} {
		t.Run(c.name, func(t *testing.T) {
			z := zipOf(t, c.members, c.method)
			p := filepath.Join(dir, "a.vhdx.zip")
			os.WriteFile(p, z, 0o644)
			a := Artifact{Arch: "x86_64", Platform: "hyperv", Format: "vhdx.zip", Kind: "disk", Compression: "zip", SHA256: sum(z), UncompressedSHA256: sum(content)}
			var out bytes.Buffer
			n, err := Decompress(context.Background(), a, p, &out)
			if c.want != nil {
				if !errors.Is(err, c.want) || !strings.Contains(err.Error(), "one file") {
					t.Fatalf("got %v, want %v", err, c.want)
				}
				return
			}
			if err != nil || n != int64(len(content)) || !bytes.Equal(out.Bytes(), content) {
				t.Fatalf("n=%d err=%v", n, err)
			}
			a.UncompressedSHA256 = sum([]byte("other"))
			if _, err := Decompress(context.Background(), a, p, io.Discard); !errors.Is(err, ErrChecksum) {
				t.Fatalf("wrong uncompressed sha: %v", err)
			}
		})
	}
	// A flipped byte inside the deflated member is caught by zip's CRC or the checksum.
	z := zipOf(t, map[string][]byte{"a.vhdx": content}, zip.Deflate)
	z[60] ^= 0x40
	p := filepath.Join(dir, "bad.zip")
	os.WriteFile(p, z, 0o644)
	a := Artifact{Compression: "zip", SHA256: sum(z), UncompressedSHA256: sum(content)}
	if _, err := Decompress(context.Background(), a, p, io.Discard); err == nil {
		t.Fatal("corrupt zip accepted")
	}
}

// FuzzParse: no input panics Parse or OnlyArch, and what Parse accepts keeps its promises.
func FuzzParse(f *testing.F) {
	for _, raw := range realStreams(f) {
		f.Add(raw)
	}
	h := strings.Repeat("ab", 32)
	f.Add(fill(h, strings.Repeat("cd", 32)))
	f.Add([]byte(`{"architectures":{"x86_64":{"artifacts":{"p":{"formats":{"f.zip":{"disk":{"location":"https://x/a.zip","sha256":"` + h + `","uncompressed-sha256":"` + strings.Repeat("cd", 32) + `"}}}}}}}}`))
	f.Add([]byte(`{"architectures":{}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		rel, err := Parse(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		names := map[string]bool{}
		for _, a := range rel.Artifacts {
			if a.Name == "" || names[a.Name] || strings.Contains(a.Name, "/") {
				t.Fatalf("bad or duplicate name %q", a.Name)
			}
			names[a.Name] = true
			if !hexSHA256.MatchString(a.SHA256) || !hexSHA256.MatchString(a.UncompressedSHA256) {
				t.Fatalf("%s: checksums %q %q", a.ID(), a.SHA256, a.UncompressedSHA256)
			}
			if (a.Compression == "") != (a.Name == a.ShippedName) || (a.Compression == "") != (a.UncompressedSHA256 == a.SHA256) {
				t.Fatalf("%s: inconsistent rule %+v", a.ID(), a)
			}
		}
		for _, arch := range rel.Arches() {
			one, err := rel.OnlyArch(arch)
			if err != nil {
				continue // e.g. a duplicate key: the generic decoder keeps the last one
			}
			sub, err := Parse(one)
			if err != nil {
				continue // the architecture had no artifacts of its own
			}
			if strings.Join(sub.Arches(), " ") != arch {
				t.Fatalf("OnlyArch(%s) kept %v", arch, sub.Arches())
			}
			for _, a := range rel.Artifacts {
				if b, ok := sub.Find(a.ID()); a.Arch == arch && (!ok || b != a) {
					t.Fatalf("OnlyArch(%s) lost or changed %s", arch, a.ID())
				}
			}
		}
	})
}

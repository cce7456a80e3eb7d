package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rehydrator/rehydrator/streammeta"
	"github.com/rehydrator/rehydrator/tests/fixtures"
)

// streamServer serves a fixture release on loopback at the paths its stream names, the stream
// itself at /stable.json, and a detached signature beside each file.
type streamServer struct {
	*httptest.Server
	dir    string
	extra  map[string]string // file name -> path, for files beside the fixture release
	stream []byte
	sigs   map[string][]byte
	mu     sync.Mutex
	seen   map[string][]string // file name -> Range headers of its requests
	cutOne string              // the first request for this file is cut halfway
}

func (s *streamServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/stable.json" {
		w.Write(s.stream)
		return
	}
	name := path.Base(r.URL.Path)
	if sig, ok := s.sigs[name]; ok {
		w.Write(sig)
		return
	}
	s.mu.Lock()
	s.seen[name] = append(s.seen[name], r.Header.Get("Range"))
	first := len(s.seen[name]) == 1
	s.mu.Unlock()
	p := filepath.Join(s.dir, name)
	if e, ok := s.extra[name]; ok {
		p = e
	}
	if name == s.cutOne && first {
		data, err := os.ReadFile(p)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
		return
	}
	http.ServeFile(w, r, p)
}

// gpgSigner makes a throwaway OpenPGP key with GnuPG; sign returns a file's detached signature.
func gpgSigner(t *testing.T) (sign func(path string) []byte, keyring string) {
	dir := t.TempDir()
	home := filepath.Join(dir, "gnupg")
	os.Mkdir(home, 0o700)
	gpg := func(args ...string) []byte {
		out, err := exec.Command("gpg", append([]string{"--batch", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...).Output()
		if err != nil {
			t.Fatalf("gpg %v: %v", args, err)
		}
		return out
	}
	gpg("--quick-gen-key", "Fedora Test <test@example.org>", "rsa2048", "sign", "never")
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	keyring = filepath.Join(dir, "fedora.asc")
	if err := os.WriteFile(keyring, gpg("--armor", "--export"), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(p string) []byte { return gpg("--detach-sign", "-o", "-", p) }, keyring
}

// realShaped rewrites the fixture stream the way the real stable-44 stream differs from it and
// returns the new document and its parse. The hyperv VHDX is made with qemu-img from the qemu
// disk and zipped with zip -9j, as the real pipeline ships it.
func realShaped(t *testing.T, raw []byte, relDir string, extra map[string]string) ([]byte, *streammeta.Release) {
	sm, err := streammeta.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	qemu := find(t, sm, "qemu")
	qcow := filepath.Join(work, "qemu.qcow2")
	f, err := os.Create(qcow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := streammeta.Decompress(t.Context(), qemu, filepath.Join(relDir, qemu.ShippedName), f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	vhdx := filepath.Join(work, "fcos-hyperv.x86_64.vhdx")
	tool(t, "qemu-img", "convert", "-f", "qcow2", "-O", "vhdx", "-o", "subformat=dynamic", qcow, vhdx)
	zipped := vhdx + ".zip"
	tool(t, "zip", "-9j", "-q", zipped, vhdx)

	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["x-future-key"] = map[string]any{"kept": true}
	x86 := doc["architectures"].(map[string]any)["x86_64"].(map[string]any)
	x86["images"] = map[string]any{"gcp": map[string]any{"release": "41", "project": "fedora-coreos-cloud", "name": "fedora-coreos-41"}}
	x86["x-unknown"] = []any{1, "two"}
	arts := x86["artifacts"].(map[string]any)
	add := func(platform, format, path, uncompressedSHA string) {
		loc := strings.TrimSuffix(qemu.Location, qemu.ShippedName) + filepath.Base(path)
		disk := map[string]any{"location": loc, "signature": loc + ".sig", "sha256": fileSHA(t, path)}
		if uncompressedSHA != "" {
			disk["uncompressed-sha256"] = uncompressedSHA
		}
		arts[platform] = map[string]any{"release": "41", "formats": map[string]any{format: map[string]any{"disk": disk}}}
		extra[filepath.Base(path)] = path
	}
	add("hyperv", "vhdx.zip", zipped, fileSHA(t, vhdx))
	// gcp: a sparse tar of the raw disk, gzip'd, with sha256 only (the small release has none).
	if _, ok := arts["gcp"]; ok {
		t.Fatal("the small release has a gcp disk now: drop its uncompressed-sha256 here instead")
	}
	raw2 := filepath.Join(work, "disk.raw")
	tool(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow, raw2)
	gcp := filepath.Join(work, "fcos-gcp.x86_64.tar.gz")
	tool(t, "tar", "--sparse", "--format=oldgnu", "-C", work, "-czf", gcp, "disk.raw")
	add("gcp", "tar.gz", gcp, "")
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	sm, err = streammeta.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	return out, sm
}

// TestBuildFromStream builds the small fixture release from its stream URL on a loopback
// server (signatures checked, one download cut halfway and resumed) and rehydrates from it.
func TestBuildFromStream(t *testing.T) {
	rel, sm := smallRelease(t)
	raw, err := os.ReadFile(rel.StreamPath)
	if err != nil {
		t.Fatal(err)
	}
	sign, keyring := gpgSigner(t)
	s := &streamServer{dir: rel.Dir, sigs: map[string][]byte{}, seen: map[string][]string{}, extra: map[string]string{}}
	s.Server = httptest.NewServer(s)
	defer s.Close()
	// The stream as served is shaped like the real one of 2026 (stable-44): a hyperv vhdx.zip,
	// gcp's tar.gz with sha256 only, an images section and keys this program does not know.
	s.stream, sm = realShaped(t, bytes.ReplaceAll(raw, []byte(fixtures.BaseURL), []byte(s.URL)), rel.Dir, s.extra)
	qemu := find(t, sm, "qemu")
	s.cutOne = qemu.ShippedName
	for _, a := range sm.Artifacts {
		p := filepath.Join(rel.Dir, a.ShippedName)
		if e, ok := s.extra[a.ShippedName]; ok {
			p = e
		}
		s.sigs[a.ShippedName+".sig"] = sign(p)
	}
	url := s.URL + "/stable.json"

	// --dry-run: one line per artifact, nothing downloaded.
	lines := strings.Split(strings.TrimSpace(string(mustRun(t, "build", "--stream", url, "--arch", "x86_64", "--dry-run"))), "\n")
	if len(lines) != len(sm.Artifacts) {
		t.Fatalf("--dry-run printed %d lines for %d artifacts:\n%s", len(lines), len(sm.Artifacts), strings.Join(lines, "\n"))
	}
	for _, a := range sm.Artifacts {
		want := strings.Join([]string{a.Platform, a.Format, a.Kind, a.ShippedName}, "\t")
		if !strings.Contains("\n"+strings.Join(lines, "\n")+"\n", "\n"+want+"\n") {
			t.Fatalf("--dry-run has no line %q", want)
		}
	}
	if len(s.seen) != 0 {
		t.Fatalf("--dry-run downloaded %v", s.seen)
	}

	cache := t.TempDir()
	out := filepath.Join(t.TempDir(), "layout")
	ref := "oci:" + out + ":stable"
	r := run(t, nil, "build", "--stream", url, "--arch", "x86_64", "--cache", cache, "--verify-gpg", keyring, "--output", ref, "--level", "1")
	if r.err != nil {
		t.Fatalf("build --stream: %v\n%s", r.err, r.stderr)
	}
	for _, want := range []string{"downloaded " + qemu.ShippedName, "resumed at", "signature good: " + qemu.ShippedName} {
		if !bytes.Contains(r.stderr, []byte(want)) {
			t.Fatalf("stderr has no %q:\n%s", want, r.stderr)
		}
	}
	if ranges := s.seen[qemu.ShippedName]; len(ranges) != 2 || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("the cut download was not resumed with a Range: %q", ranges)
	}
	// The stream in the image is the one served, byte for byte (one architecture: nothing pruned).
	if got := mustRun(t, "print-stream-json", "--image", ref); !bytes.Equal(got, s.stream) {
		t.Fatal("print-stream-json differs from the served stream.json")
	}
	checkOne(t, ref, sm, "openstack")
	// gcp comes out as shipped (.tar.gz, its sha256); hyperv as the VHDX inside the zip.
	if gcp := find(t, sm, "gcp"); !strings.HasSuffix(gcp.Name, ".tar.gz") || gcp.UncompressedSHA256 != gcp.SHA256 {
		t.Fatalf("gcp: %+v", gcp)
	}
	checkOne(t, ref, sm, "gcp")
	if hv := find(t, sm, "hyperv"); hv.Name != "fcos-hyperv.x86_64.vhdx" || hv.Compression != "zip" {
		t.Fatalf("hyperv: %+v", hv)
	}
	checkOne(t, ref, sm, "hyperv")

	// A wrong signature: a one-line error, no image.
	s.sigs[qemu.ShippedName+".sig"] = sign(filepath.Join(rel.Dir, find(t, sm, "openstack").ShippedName))
	out2 := filepath.Join(t.TempDir(), "layout")
	mustFail(t, nil, "signature check failed", "build", "--stream", url, "--arch", "x86_64", "--cache", cache, "--verify-gpg", keyring, "--output", "oci:"+out2)
	if _, err := os.Stat(out2); err == nil {
		t.Fatal("an image written after a bad signature")
	}
}

// TestBuildStreamProgress: downloads draw one status line on a terminal and plain lines
// elsewhere. The release is made up (its qcow2.xz is no xz), so the build stops right after the
// downloads, at dehydrate's check, with a one-line error.
func TestBuildStreamProgress(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"fcos-qemu.x86_64.qcow2.xz": bytes.Repeat([]byte("not xz "), 1<<20),
		"fcos-vmware.x86_64.ova":    bytes.Repeat([]byte("ova "), 1<<19),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := &streamServer{dir: dir, seen: map[string][]string{}}
	s.Server = httptest.NewServer(s)
	defer s.Close()
	s.stream = []byte(fmt.Sprintf(`{"stream": "stable", "architectures": {"x86_64": {"artifacts": {
  "qemu": {"release": "1", "formats": {"qcow2.xz": {"disk": {"location": "%[1]s/b/fcos-qemu.x86_64.qcow2.xz", "sha256": "%[2]s", "uncompressed-sha256": "%[3]s"}}}},
  "vmware": {"release": "1", "formats": {"ova": {"disk": {"location": "%[1]s/b/fcos-vmware.x86_64.ova", "sha256": "%[4]s"}}}}}}}}`,
		s.URL, sha256hex(files["fcos-qemu.x86_64.qcow2.xz"]), strings.Repeat("0", 64), sha256hex(files["fcos-vmware.x86_64.ova"])))
	args := []string{"build", "--stream", s.URL + "/stable.json", "--arch", "x86_64", "--cache", t.TempDir(), "--output", "oci:" + filepath.Join(t.TempDir(), "layout")}

	master, slave := openPTY(t)
	defer master.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var screen bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&screen, master); close(done) }()
	if err := cmd.Wait(); err == nil {
		t.Fatal("a release whose qcow2.xz is no xz was built")
	}
	<-done
	got := screen.String()
	for _, want := range []string{"\r\x1b[Kfiles 2/2  ", "fcos-qemu.x86_64.qcow2.xz", "rehydrator: "} {
		if !strings.Contains(got, want) {
			t.Fatalf("the terminal shows %q, want %q", got, want)
		}
	}
	if strings.Contains(got, "downloaded fcos-") {
		t.Fatalf("plain lines on a terminal: %q", got)
	}

	r := run(t, nil, args...)
	if r.err == nil {
		t.Fatal("a release whose qcow2.xz is no xz was built")
	}
	// The cache now holds both files: plain lines say so; no status line.
	for _, want := range []string{"cached fcos-qemu.x86_64.qcow2.xz", "cached fcos-vmware.x86_64.ova"} {
		if !bytes.Contains(r.stderr, []byte(want)) {
			t.Fatalf("stderr has no %q:\n%s", want, r.stderr)
		}
	}
	if bytes.Contains(r.stderr, []byte("\r")) {
		t.Fatalf("a status line on redirected stderr: %q", r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(r.stderr)), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "rehydrator: ") || !strings.Contains(last, "fcos-qemu.x86_64.qcow2.xz") {
		t.Fatalf("last line %q: want the one-line error naming the file", last)
	}
}

package fetchrelease

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehydrator/rehydrator/streammeta"
)

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// server serves a made-up release at the paths its stream names, with faults on request.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte // URL path -> content
	requests []string          // "PATH RANGE"
	// fault, when it returns true, has answered the request itself.
	fault func(w http.ResponseWriter, r *http.Request, nth int) bool
	nth   map[string]int
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.URL.Path+" "+r.Header.Get("Range"))
	s.nth[r.URL.Path]++
	nth, fault := s.nth[r.URL.Path], s.fault
	b, ok := s.files[r.URL.Path]
	s.mu.Unlock()
	if fault != nil && fault(w, r, nth) {
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

func (s *server) fileRequests(path string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.requests {
		if strings.HasPrefix(r, path+" ") {
			out = append(out, r)
		}
	}
	return out
}

type file struct {
	arch, platform, format, kind, name string
	data                               []byte
}

// release makes files of a few MiB for two architectures, and the stream.json naming them on
// the server, with an images section and a key this program does not know.
func release(t *testing.T) (*server, []byte, []file) {
	rng := rand.New(rand.NewSource(1))
	mk := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	files := []file{
		{"x86_64", "qemu", "qcow2.xz", "disk", "fcos-qemu.x86_64.qcow2.xz", mk(3 << 20)},
		{"x86_64", "gcp", "tar.gz", "disk", "fcos-gcp.x86_64.tar.gz", mk(1 << 20)},
		{"x86_64", "metal", "pxe", "kernel", "fcos-live-kernel.x86_64", mk(200 << 10)},
		{"x86_64", "vmware", "ova", "disk", "fcos-vmware.x86_64.ova", mk(1 << 20)},
		{"aarch64", "qemu", "qcow2.xz", "disk", "fcos-qemu.aarch64.qcow2.xz", mk(2 << 20)},
	}
	s := &server{files: map[string][]byte{}, nth: map[string]int{}}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	arches := map[string][]string{}
	for _, f := range files {
		p := "/prod/streams/stable/builds/44.1/" + f.arch + "/" + f.name
		s.files[p] = f.data
		usha := ""
		if strings.HasSuffix(f.name, ".xz") {
			usha = fmt.Sprintf(`, "uncompressed-sha256": "%s"`, hexSum(append([]byte("u"), f.data...)))
		}
		arches[f.arch] = append(arches[f.arch], fmt.Sprintf(`"%s": {"release": "44.1", "formats": {"%s": {"%s": {"location": "%s", "signature": "%s.sig", "sha256": "%s"%s}}}}`,
			f.platform, f.format, f.kind, s.URL+p, s.URL+p, hexSum(f.data), usha))
	}
	var doc strings.Builder
	doc.WriteString("{\n  \"stream\": \"stable\",\n  \"metadata\": {\"last-modified\": \"2026-07-07T00:00:00Z\", \"future-key\": [1, 2]},\n  \"architectures\": {\n")
	for i, arch := range []string{"aarch64", "x86_64"} {
		if i > 0 {
			doc.WriteString(",\n")
		}
		fmt.Fprintf(&doc, "    %q: {\n      \"artifacts\": {%s},\n      \"images\": {\"gcp\": {\"project\": \"fedora-coreos-cloud\", \"name\": \"img-%s\"}},\n      \"unknown\": true\n    }", arch, strings.Join(arches[arch], ",\n        "), arch)
	}
	doc.WriteString("\n  }\n}\n")
	return s, []byte(doc.String()), files
}

func quick(cache string, arches ...string) Options {
	return Options{Arches: arches, CacheDir: cache, RetryWait: time.Millisecond, Attempts: 3}
}

func checkDir(t *testing.T, dir, arch string, raw []byte, files []file) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(dir, "stream.json"))
	if err != nil {
		t.Fatal(err)
	}
	rel, err := streammeta.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(rel.Arches(), " ") != arch {
		t.Fatalf("%s: stream.json has %v", dir, rel.Arches())
	}
	full, _ := streammeta.Parse(raw)
	if want, _ := full.OnlyArch(arch); !bytes.Equal(doc, want) {
		t.Fatalf("%s: stream.json is not the shipped one less the other architectures", dir)
	}
	n := 0
	for _, f := range files {
		if f.arch != arch {
			continue
		}
		n++
		got, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil || !bytes.Equal(got, f.data) {
			t.Fatalf("%s: %v", f.name, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != n+1 {
		t.Fatalf("%s holds %d entries, want %d files and stream.json", dir, len(entries), n)
	}
}

func TestFetch(t *testing.T) {
	s, raw, files := release(t)
	cache := t.TempDir()
	var mu sync.Mutex
	states := map[string]string{}
	opt := quick(cache, "x86_64", "aarch64")
	opt.Progress = func(e Event) {
		mu.Lock()
		states[e.File] = e.State
		mu.Unlock()
	}
	dirs, err := Fetch(context.Background(), raw, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 2 || filepath.Base(dirs[0]) != "x86_64" || filepath.Base(dirs[1]) != "aarch64" {
		t.Fatalf("dirs %v", dirs)
	}
	checkDir(t, dirs[0], "x86_64", raw, files)
	checkDir(t, dirs[1], "aarch64", raw, files)
	for _, f := range files {
		if states[f.name] != StateDone {
			t.Errorf("%s: last state %q", f.name, states[f.name])
		}
	}
	// Again: every file comes from the cache, no request for any.
	before := len(s.requests)
	states = map[string]string{}
	if dirs, err = Fetch(context.Background(), raw, opt); err != nil {
		t.Fatal(err)
	}
	checkDir(t, dirs[0], "x86_64", raw, files)
	if len(s.requests) != before {
		t.Fatalf("the second run made %d requests: %v", len(s.requests)-before, s.requests[before:])
	}
	for _, f := range files {
		if states[f.name] != StateCached {
			t.Errorf("%s: second run: last state %q", f.name, states[f.name])
		}
	}
	// A file spoiled in the cache is fetched again.
	spoiled := filepath.Join(cache, "files", hexSum(files[0].data))
	os.Remove(spoiled)
	os.WriteFile(spoiled, []byte("spoiled"), 0o644)
	if dirs, err = Fetch(context.Background(), raw, opt); err != nil {
		t.Fatal(err)
	}
	checkDir(t, dirs[0], "x86_64", raw, files)
	if got := s.fileRequests("/prod/streams/stable/builds/44.1/x86_64/" + files[0].name); len(got) != 2 {
		t.Fatalf("spoiled file fetched %d times in all, want 2", len(got))
	}
}

func TestFetchOneArch(t *testing.T) {
	_, raw, files := release(t)
	dirs, err := Fetch(context.Background(), raw, quick(t.TempDir(), "aarch64"))
	if err != nil {
		t.Fatal(err)
	}
	checkDir(t, dirs[0], "aarch64", raw, files)
	if _, err := Fetch(context.Background(), raw, quick(t.TempDir(), "s390x")); err == nil || !strings.Contains(err.Error(), `no architecture "s390x"`) || !strings.Contains(err.Error(), "--arch") {
		t.Fatalf("unknown arch: %v", err)
	}
}

func TestFetchServerError(t *testing.T) {
	s, raw, files := release(t)
	bad := "/prod/streams/stable/builds/44.1/x86_64/" + files[1].name
	// A 500 once is retried and passes.
	s.fault = func(w http.ResponseWriter, r *http.Request, nth int) bool {
		if r.URL.Path == bad && nth == 1 {
			http.Error(w, "busy", http.StatusInternalServerError)
			return true
		}
		return false
	}
	cache := t.TempDir()
	if _, err := Fetch(context.Background(), raw, quick(cache, "x86_64")); err != nil {
		t.Fatalf("one 500 then success: %v", err)
	}
	// A 500 every time is a clear error, and nothing of that file is kept.
	s.fault = func(w http.ResponseWriter, r *http.Request, nth int) bool {
		if r.URL.Path == bad {
			http.Error(w, "broken", http.StatusInternalServerError)
			return true
		}
		return false
	}
	cache = t.TempDir()
	_, err := Fetch(context.Background(), raw, quick(cache, "x86_64"))
	if err == nil || !strings.Contains(err.Error(), "500 Internal Server Error") || strings.Count(err.Error(), files[1].name) != 1 || strings.Contains(err.Error(), "\n") {
		t.Fatalf("500: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "files", hexSum(files[1].data))); err == nil {
		t.Fatal("a file kept at its final path after a 500")
	}
	if _, err := os.Stat(filepath.Join(cache, "releases")); err == nil {
		t.Fatal("a release directory written after a failure")
	}
	// A 404 is not retried.
	s.fault = func(w http.ResponseWriter, r *http.Request, nth int) bool {
		if r.URL.Path == bad {
			http.NotFound(w, r)
			return true
		}
		return false
	}
	n := len(s.fileRequests(bad))
	_, err = Fetch(context.Background(), raw, quick(t.TempDir(), "x86_64"))
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "check the stream's location") || len(s.fileRequests(bad)) != n+1 {
		t.Fatalf("404: %v (%d requests)", err, len(s.fileRequests(bad))-n)
	}
}

// cut sends the first half of the file with the whole file's length, then drops the connection.
func cut(w http.ResponseWriter, data []byte) {
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.WriteHeader(http.StatusOK)
	w.Write(data[:len(data)/2])
	w.(http.Flusher).Flush()
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	}
}

func TestFetchResume(t *testing.T) {
	s, raw, files := release(t)
	big := "/prod/streams/stable/builds/44.1/x86_64/" + files[0].name
	s.fault = func(w http.ResponseWriter, r *http.Request, nth int) bool {
		if r.URL.Path == big && nth == 1 {
			cut(w, files[0].data)
			return true
		}
		return false
	}
	var mu sync.Mutex
	var resumed int64
	opt := quick(t.TempDir(), "x86_64")
	opt.Progress = func(e Event) {
		mu.Lock()
		if e.File == files[0].name && e.State == StateDone {
			resumed = e.Resumed
		}
		mu.Unlock()
	}
	dirs, err := Fetch(context.Background(), raw, opt)
	if err != nil {
		t.Fatal(err)
	}
	checkDir(t, dirs[0], "x86_64", raw, files)
	reqs := s.fileRequests(big)
	if len(reqs) != 2 || !strings.HasPrefix(strings.Fields(reqs[1])[1], "bytes=") || reqs[1] == big+" bytes=0-" {
		t.Fatalf("requests %q: want a second one with a Range past 0", reqs)
	}
	if resumed == 0 {
		t.Fatal("the second transfer fetched the whole file again")
	}

	// Across runs: one attempt only, so the cut ends the run with the .part file kept...
	s.mu.Lock()
	s.nth = map[string]int{}
	s.mu.Unlock()
	cache := t.TempDir()
	opt = quick(cache, "x86_64")
	opt.Attempts = 1
	_, err = Fetch(context.Background(), raw, opt)
	if err == nil || !strings.Contains(err.Error(), "run the same command again to resume") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("cut with one attempt: %v", err)
	}
	part := filepath.Join(cache, "files", hexSum(files[0].data)+".part")
	if st, err := os.Stat(part); err != nil || st.Size() == 0 || st.Size() >= int64(len(files[0].data)) {
		t.Fatalf("no partial .part kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cache, "files", hexSum(files[0].data))); err == nil {
		t.Fatal("a cut file at its final path")
	}
	// ...and the next run completes it from where it stopped.
	dirs, err = Fetch(context.Background(), raw, opt)
	if err != nil {
		t.Fatal(err)
	}
	checkDir(t, dirs[0], "x86_64", raw, files)
	if reqs := s.fileRequests(big); !strings.Contains(reqs[len(reqs)-1], "bytes=") {
		t.Fatalf("second run did not resume: %q", reqs)
	}
}

func TestFetchStall(t *testing.T) {
	s, raw, files := release(t)
	big := "/prod/streams/stable/builds/44.1/x86_64/" + files[0].name
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	s.fault = func(w http.ResponseWriter, r *http.Request, nth int) bool {
		if r.URL.Path == big && nth == 1 {
			w.Header().Set("Content-Length", fmt.Sprint(len(files[0].data)))
			w.Write(files[0].data[:1000])
			w.(http.Flusher).Flush()
			<-release // then nothing
			return true
		}
		return false
	}
	opt := quick(t.TempDir(), "x86_64")
	opt.StallTimeout = 300 * time.Millisecond
	dirs, err := Fetch(context.Background(), raw, opt)
	if err != nil {
		t.Fatal(err)
	}
	checkDir(t, dirs[0], "x86_64", raw, files)
}

func TestFetchWrongSHA(t *testing.T) {
	s, raw, files := release(t)
	bad := "/prod/streams/stable/builds/44.1/x86_64/" + files[3].name
	s.fault = func(w http.ResponseWriter, r *http.Request, nth int) bool {
		if r.URL.Path == bad {
			other := bytes.Clone(files[3].data)
			other[12345] ^= 1
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(other))
			return true
		}
		return false
	}
	cache := t.TempDir()
	_, err := Fetch(context.Background(), raw, quick(cache, "x86_64"))
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), files[3].name) || !strings.Contains(err.Error(), "nothing kept") {
		t.Fatalf("wrong sha256: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(cache, "files", hexSum(files[3].data)+"*"))
	if len(leftovers) != 0 {
		t.Fatalf("kept %v", leftovers)
	}
	if len(s.fileRequests(bad)) != 1 {
		t.Fatalf("a wrong file fetched %d times", len(s.fileRequests(bad)))
	}
}

// gpgKey makes a signing key with GnuPG and returns a sign function and the armored and binary
// public keyrings.
func gpgKey(t testing.TB) (sign func([]byte) []byte, armored, binary string) {
	for _, tool := range []string{"gpg", "gpgv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (apt-get install gnupg gpgv): %v", tool, err)
		}
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	os.Mkdir(home, 0o700)
	gpg := func(stdin []byte, args ...string) []byte {
		cmd := exec.Command("gpg", append([]string{"--batch", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("gpg %v: %v\n%s", args, err, errb.String())
		}
		return out.Bytes()
	}
	gpg(nil, "--quick-gen-key", "Fedora Test <test@example.org>", "rsa2048", "sign", "never")
	armored, binary = filepath.Join(dir, "key.asc"), filepath.Join(dir, "key.gpg")
	os.WriteFile(armored, gpg(nil, "--armor", "--export"), 0o644)
	os.WriteFile(binary, gpg(nil, "--export"), 0o644)
	t.Cleanup(func() { exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() })
	return func(data []byte) []byte { return gpg(data, "--detach-sign", "-o", "-") }, armored, binary
}

func TestFetchSignatures(t *testing.T) {
	s, raw, files := release(t)
	sign, armored, binary := gpgKey(t)
	s.mu.Lock()
	for p, b := range s.files {
		s.files[p+".sig"] = sign(b)
	}
	s.mu.Unlock()
	for _, keyring := range []string{armored, binary} {
		opt := quick(t.TempDir(), "x86_64")
		opt.Keyring = keyring
		var mu sync.Mutex
		verified := 0
		opt.Progress = func(e Event) {
			if e.State == StateVerified {
				mu.Lock()
				verified++
				mu.Unlock()
			}
		}
		dirs, err := Fetch(context.Background(), raw, opt)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(keyring), err)
		}
		checkDir(t, dirs[0], "x86_64", raw, files)
		if verified != 4 {
			t.Fatalf("%s: %d signatures verified, want 4", filepath.Base(keyring), verified)
		}
	}
	sigPath := "/prod/streams/stable/builds/44.1/x86_64/" + files[2].name + ".sig"
	for _, c := range []struct {
		name  string
		sig   []byte
		want  string
		unset bool
	}{
		{"missing", nil, "404 Not Found", true},
		{"bad", sign([]byte("another file")), "bad signature", false},
		{"garbage", []byte("not a signature"), "holds no signature", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s.mu.Lock()
			old := s.files[sigPath]
			if c.unset {
				delete(s.files, sigPath)
			} else {
				s.files[sigPath] = c.sig
			}
			s.mu.Unlock()
			defer func() { s.mu.Lock(); s.files[sigPath] = old; s.mu.Unlock() }()
			cache := t.TempDir()
			opt := quick(cache, "x86_64")
			opt.Keyring = armored
			_, err := Fetch(context.Background(), raw, opt)
			if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), files[2].name) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(cache, "files", hexSum(files[2].data))); err == nil && !c.unset {
				t.Fatal("a file with a bad signature stays in the cache")
			}
			if _, err := os.Stat(filepath.Join(cache, "releases")); err == nil {
				t.Fatal("a release directory written after a failed signature")
			}
		})
	}
	// A keyring that is no key at all.
	notKey := filepath.Join(t.TempDir(), "k")
	os.WriteFile(notKey, []byte("hello"), 0o644)
	opt := quick(t.TempDir(), "x86_64")
	opt.Keyring = notKey
	if _, err := Fetch(context.Background(), raw, opt); err == nil || !strings.Contains(err.Error(), "not an OpenPGP public key") {
		t.Fatalf("not a key: %v", err)
	}
}

func TestReadStreamAndLines(t *testing.T) {
	s, raw, _ := release(t)
	s.files["/stream.json"] = raw
	got, err := ReadStream(context.Background(), s.URL+"/stream.json", nil)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("URL: %v", err)
	}
	if _, err := ReadStream(context.Background(), s.URL+"/nothing.json", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404: %v", err)
	}
	p := filepath.Join(t.TempDir(), "stream.json")
	os.WriteFile(p, raw, 0o644)
	if got, err := ReadStream(context.Background(), p, nil); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("file: %v", err)
	}
	rel, _ := streammeta.Parse(raw)
	arts, _ := Select(rel, []string{"x86_64"})
	lines := Lines(arts)
	want := []string{
		"gcp\ttar.gz\tdisk\tfcos-gcp.x86_64.tar.gz",
		"metal\tpxe\tkernel\tfcos-live-kernel.x86_64",
		"qemu\tqcow2.xz\tdisk\tfcos-qemu.x86_64.qcow2.xz",
		"vmware\tova\tdisk\tfcos-vmware.x86_64.ova",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s", strings.Join(lines, "\n"))
	}
}

func TestDearmor(t *testing.T) {
	body := []byte{0x99, 0x01, 0x0d, 1, 2, 3}
	armored := "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: x\n\nmQENAQID\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
	got, err := dearmor([]byte(armored + armored))
	if err != nil || !bytes.Equal(got, append(bytes.Clone(body), body...)) {
		t.Fatalf("got %x, %v", got, err)
	}
	if _, err := dearmor([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ")); err == nil {
		t.Fatal("truncated armor accepted")
	}
}

// Two fetches into one cache at once: each file is downloaded once, both succeed.
func TestFetchSharedCache(t *testing.T) {
	s, raw, files := release(t)
	cache := t.TempDir()
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := Fetch(context.Background(), raw, quick(cache, "x86_64"))
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		if f.arch != "x86_64" {
			continue
		}
		if got := s.fileRequests("/prod/streams/stable/builds/44.1/x86_64/" + f.name); len(got) != 1 {
			t.Errorf("%s fetched %d times", f.name, len(got))
		}
	}
}

package fetchrelease

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/rehydrator/rehydrator/streammeta"
)

// benchSize is the file the benchmarks move: big enough that per-request costs vanish.
const benchSize = 64 << 20

// BenchmarkFetch downloads one 64 MiB file over loopback into a fresh cache (sha256 checked
// while streaming); compare with BenchmarkSHA256 for what the checksum costs.
func BenchmarkFetch(b *testing.B) {
	data := make([]byte, benchSize)
	rand.Read(data)
	s, raw := benchRelease(b, data)
	_ = s
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := Fetch(context.Background(), raw, Options{Arches: []string{"x86_64"}, CacheDir: b.TempDir()}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSHA256 hashes the same 64 MiB from a file, as the cache check does.
func BenchmarkSHA256(b *testing.B) {
	p := benchFile(b)
	b.SetBytes(benchSize)
	for b.Loop() {
		f, _ := os.Open(p)
		io.Copy(sha256.New(), f)
		f.Close()
	}
}

// BenchmarkGPGV checks a detached signature of the same 64 MiB file with gpgv, as --verify-gpg
// does (process start, keyring read, hash, RSA verify).
func BenchmarkGPGV(b *testing.B) {
	p := benchFile(b)
	sign, armored, _ := gpgKey(b)
	data, _ := os.ReadFile(p)
	sig := sign(data)
	keyring, err := prepareKeyring(armored, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	f := &fetcher{opt: Options{}, keyring: keyring}
	f.opt.defaults()
	s := &server{files: map[string][]byte{"/f.sig": sig}, nth: map[string]int{}}
	s.Server = newServer(s)
	defer s.Close()
	a := benchArtifact(s.URL+"/f", data)
	b.SetBytes(benchSize)
	for b.Loop() {
		if err := f.verifySignature(context.Background(), a, p); err != nil {
			b.Fatal(err)
		}
	}
}

func benchFile(b *testing.B) string {
	data := make([]byte, benchSize)
	rand.Read(data)
	p := filepath.Join(b.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

func newServer(s *server) *httptest.Server { return httptest.NewServer(s) }

func benchArtifact(loc string, data []byte) streammeta.Artifact {
	return streammeta.Artifact{Arch: "x86_64", Platform: "qemu", Format: "qcow2", Kind: "disk", Location: loc,
		ShippedName: "f", Name: "f", SHA256: hexSum(data), UncompressedSHA256: hexSum(data)}
}

// benchRelease serves data as the one file of a one-architecture stream.
func benchRelease(b *testing.B, data []byte) (*server, []byte) {
	s := &server{files: map[string][]byte{"/f.qcow2": data}, nth: map[string]int{}}
	s.Server = newServer(s)
	b.Cleanup(s.Close)
	raw := fmt.Sprintf(`{"stream":"bench","architectures":{"x86_64":{"artifacts":{"qemu":{"formats":{"qcow2":{"disk":{"location":"%s/f.qcow2","sha256":"%s"}}}}}}}}`, s.URL, hexSum(data))
	return s, []byte(raw)
}

package vmdk

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The fixtures are raw disks made here and converted by the real qemu-img;
// nothing large is committed.

var fixtureDir string

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "vmdk-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fixtureDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// qemu-img -o strings: what Fedora CoreOS uses for aws and vmware, and two
// variations of the descriptor.
var variants = []struct{ name, opts string }{
	{"aws", "adapter_type=lsilogic,subformat=streamOptimized,compat6"},
	{"nocompat6", "adapter_type=lsilogic,subformat=streamOptimized"},
	{"ide", "adapter_type=ide,subformat=streamOptimized"},
}

// diskSpec describes a generated raw disk.
type diskSpec struct {
	name    string
	size    int64 // bytes; often not a multiple of the grain or the sector
	islands int   // random data islands
	full    bool  // random data everywhere
	seed    uint64
}

var disks = []diskSpec{
	{name: "unaligned", size: 3<<20 + 12345, islands: 25, seed: 1},
	{name: "multi-gt", size: 40<<20 + 1536 + 77, islands: 60, seed: 2},
	{name: "empty", size: 1 << 20, seed: 3},
	{name: "tiny", size: 1000, islands: 1, seed: 4},
	{name: "full", size: 1<<20 + 512, full: true, seed: 5},
}

func needQemu(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (Debian: qemu-utils); it is the reference writer")
	}
}

func qemuImg(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %q: %v\n%s", args, err, out)
	}
	return out
}

var (
	fixMu    sync.Mutex
	fixCache = map[string]string{}
)

// rawDisk writes the disk d (once per test binary) and returns its path.
func rawDisk(t testing.TB, d diskSpec) string {
	t.Helper()
	fixMu.Lock()
	defer fixMu.Unlock()
	key := "raw/" + d.name
	if p, ok := fixCache[key]; ok {
		return p
	}
	p := filepath.Join(fixtureDir, d.name+".raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(d.size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(d.seed, 42))
	if d.full {
		b := make([]byte, d.size)
		fillRandom(rng, b)
		if _, err := f.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
	}
	words := make([][]byte, 200)
	for i := range words {
		words[i] = make([]byte, 1+rng.IntN(12))
		fillRandom(rng, words[i])
	}
	lens := []int{1, 100, 4096, 30000, 65536, 200000}
	for i := 0; i < d.islands; i++ {
		n := min(lens[rng.IntN(len(lens))], int(d.size))
		off := rng.Int64N(d.size - int64(n) + 1)
		b := make([]byte, n)
		switch i % 3 {
		case 0: // incompressible
			fillRandom(rng, b)
		case 1: // text-like, compresses well
			for j := 0; j < n; {
				j += copy(b[j:], words[rng.IntN(len(words))])
			}
		case 2: // a run of one byte
			for j := range b {
				b[j] = 0xa5
			}
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if d.islands > 0 && d.size > 3000 {
		// Data in the last, partial grain and sector.
		b := make([]byte, 3000)
		fillRandom(rng, b[:1500])
		if _, err := f.WriteAt(b, d.size-3000); err != nil {
			t.Fatal(err)
		}
	}
	fixCache[key] = p
	return p
}

func fillRandom(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// qemuVMDK converts disk d with qemu-img -o opts (once) and returns the path.
func qemuVMDK(t testing.TB, d diskSpec, opts string) string {
	t.Helper()
	needQemu(t)
	raw := rawDisk(t, d)
	fixMu.Lock()
	defer fixMu.Unlock()
	key := "vmdk/" + d.name + "/" + opts
	if p, ok := fixCache[key]; ok {
		return p
	}
	p := filepath.Join(fixtureDir, fmt.Sprintf("%s-%d.vmdk", d.name, len(fixCache)))
	qemuImg(t, "convert", "-f", "raw", "-O", "vmdk", "-o", opts, raw, p)
	fixCache[key] = p
	return p
}

// qemuGuestSHA is the SHA-256 of qemu-img's raw conversion of an image.
func qemuGuestSHA(t testing.TB, path string) [32]byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "guest.raw")
	qemuImg(t, "convert", "-O", "raw", path, out)
	return fileSHA(t, out)
}

func fileSHA(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openBytes(t testing.TB, b []byte) *Image {
	t.Helper()
	img, err := Open(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// guestSHA hashes an image's whole guest view.
func guestSHA(img *Image) ([32]byte, error) {
	h := sha256.New()
	_, err := io.Copy(h, io.NewSectionReader(img, 0, img.Size()))
	return [32]byte(h.Sum(nil)), err
}

// readGuest reads the whole guest view and the Params, returning the first
// error.
func readGuest(img *Image) error {
	if _, err := guestSHA(img); err != nil {
		return err
	}
	_, err := img.Params()
	return err
}

package delta

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// rdiffPath returns the real librsync CLI. CI installs it, so its absence is a failure.
func rdiffPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("rdiff")
	if err != nil {
		t.Fatalf("rdiff (librsync CLI) is required for the interoperability tests: %v", err)
	}
	return p
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

type pair struct {
	name         string
	base, target []byte
}

func interopPairs() []pair {
	disk := diskLike(21, 2<<20)
	return []pair{
		{"identical", disk, disk},
		{"empty target", disk, nil},
		{"empty base", nil, disk[:70000]},
		{"scattered edits", disk, editBytes(disk, 22, 200)},
		{"insert cluster", disk, insert(disk, 300000, randomBytes(23, 64<<10))},
		{"delete", disk, remove(disk, 500000, 10000)},
		{"appended", disk, append(bytes.Clone(disk), randomBytes(24, 70000)...)},
		{"unrelated", randomBytes(25, 300000), randomBytes(26, 300000)},
		{"halves swapped", disk, append(bytes.Clone(disk[1<<20:]), disk[:1<<20]...)},
	}
}

// Our deltas, applied by the real `rdiff patch`, give the target bit for bit.
func TestRdiffPatchesOurDelta(t *testing.T) {
	rdiff := rdiffPath(t)
	for _, p := range interopPairs() {
		t.Run(p.name, func(t *testing.T) {
			dir := t.TempDir()
			_, d := roundTrip(t, p.base, p.target, Options{})
			basePath := writeFile(t, dir, "base", p.base)
			deltaPath := writeFile(t, dir, "delta", d)
			outPath := filepath.Join(dir, "out")
			run(t, rdiff, "patch", basePath, deltaPath, outPath)
			got, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, p.target) {
				t.Fatalf("rdiff patch output differs from target (%d vs %d bytes)", len(got), len(p.target))
			}
		})
	}
}

// Deltas made by `rdiff delta` (rollsum and the default RabinKarp signatures) are applied by
// PatchAt, and by Patch when their copies happen to go forward.
func TestWeApplyRdiffDelta(t *testing.T) {
	rdiff := rdiffPath(t)
	for _, p := range interopPairs() {
		for _, sigArgs := range [][]string{{"-R", "rollsum", "-b", "2048"}, {}} {
			name := p.name + "/default"
			if len(sigArgs) > 0 {
				name = p.name + "/rollsum"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				basePath := writeFile(t, dir, "base", p.base)
				targetPath := writeFile(t, dir, "target", p.target)
				sigPath, deltaPath := filepath.Join(dir, "sig"), filepath.Join(dir, "delta")
				run(t, rdiff, append(append([]string{}, sigArgs...), "signature", basePath, sigPath)...)
				run(t, rdiff, "delta", sigPath, targetPath, deltaPath)
				d, err := os.ReadFile(deltaPath)
				if err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				if err := PatchAt(bytes.NewReader(p.base), int64(len(p.base)), bytes.NewReader(d), &out); err != nil {
					t.Fatalf("PatchAt: %v", err)
				}
				if !bytes.Equal(out.Bytes(), p.target) {
					t.Fatal("PatchAt output differs from target")
				}
				if n, err := OutputSize(bytes.NewReader(d)); err != nil || n != int64(len(p.target)) {
					t.Fatalf("OutputSize = %d, %v", n, err)
				}
				forward := true
				var end int64
				for _, o := range decodeOps(t, d) {
					if o.copy {
						forward = forward && o.off >= end
						end = o.off + o.n
					}
				}
				out.Reset()
				err = Patch(streamOnly{bytes.NewReader(p.base)}, bytes.NewReader(d), &out)
				switch {
				case forward && err != nil:
					t.Fatalf("Patch of a forward delta: %v", err)
				case forward && !bytes.Equal(out.Bytes(), p.target):
					t.Fatal("Patch output differs from target")
				case !forward && !errors.Is(err, ErrBackwardCopy):
					t.Fatalf("Patch of a backward delta: %v, want ErrBackwardCopy", err)
				}
			})
		}
	}
}

// Wide fields (8-byte offsets past 4 GiB, 4-byte literal lengths) as rdiff reads them: a
// hand-made delta against a sparse 5 GiB base.
func TestRdiffWideFields(t *testing.T) {
	rdiff := rdiffPath(t)
	dir := t.TempDir()
	basePath := filepath.Join(dir, "base")
	f, err := os.Create(basePath)
	if err != nil {
		t.Fatal(err)
	}
	const far = 4<<30 + 12345
	data := randomBytes(31, 5000)
	if _, err := f.WriteAt(data, far); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(5 << 30); err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	lit := randomBytes(32, 70000)
	var d []byte
	d = append(d, 0x72, 0x73, 0x02, 0x36)
	d = appendCopyCmd(d, far, 5000)
	d = appendLiteralCmd(d, int64(len(lit)))
	d = append(d, lit...)
	d = appendCopyCmd(d, far+10, 300)
	d = appendCopyCmd(d, 5<<30-100, 100) // zeros at the very end
	d = append(d, opEnd)
	want := append(append(append(bytes.Clone(data), lit...), data[10:310]...), make([]byte, 100)...)

	deltaPath := writeFile(t, dir, "delta", d)
	outPath := filepath.Join(dir, "out")
	run(t, rdiff, "patch", basePath, deltaPath, outPath)
	got, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("rdiff output differs")
	}
	var out bytes.Buffer
	if err := PatchAt(f, 5<<30, bytes.NewReader(d), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatal("PatchAt output differs")
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = Patch(f, bytes.NewReader(d), &out)
	if !errors.Is(err, ErrBackwardCopy) {
		t.Fatalf("Patch: %v, want ErrBackwardCopy", err)
	}
}

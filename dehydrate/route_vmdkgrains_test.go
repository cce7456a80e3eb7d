package dehydrate

import (
	"archive/tar"
	"bytes"
	"context"
	"io"

	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rehydrator/rehydrator/delta"

	"github.com/rehydrator/rehydrator/internal/diskview"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// testdata/zlibng.vmdk was made from zlibngGuest() by qemu-img linked with zlib-ng 2.2.2's
// compat library, which CI lacks:
//
//	LD_LIBRARY_PATH=/var/cache/rehydrator-tools/zlib-ng-compat-2.2.2/lib \
//	  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized guest.raw zlibng.vmdk

// zlibngSteps plans testdata/zlibng.vmdk (or an OVA around it, when ova) as the format route
// does, with the guest as a blob.
func zlibngSteps(t *testing.T, ova bool) (steps []rehydrate.Step, blobs LocalBlobs, gb *blob, want string) {
	t.Helper()
	vm, err := os.ReadFile("testdata/zlibng.vmdk")
	if err != nil {
		t.Fatal(err)
	}
	if ova {
		vm = zlibngOVA(t, vm)
	}
	sum := sha256.Sum256(vm)
	want = hex.EncodeToString(sum[:])
	r := bytes.NewReader(vm)
	f := diskview.Sniff(r, int64(len(vm)))
	if f == nil {
		t.Fatal("zlibng.vmdk not sniffed")
	}
	v, err := f.Open(r, int64(len(vm)))
	if err != nil {
		t.Fatal(err)
	}
	guest := zlibngGuest()
	got := make([]byte, v.Size)
	if _, err := v.ReadAt(got, 0); err != nil || !bytes.Equal(got, guest) {
		t.Fatalf("zlibng.vmdk's guest view is not zlibngGuest() (%v)", err)
	}
	fsteps, err := v.Steps()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	gpath := filepath.Join(dir, "guest")
	os.WriteFile(gpath, guest, 0o644)
	gsum := sha256.Sum256(guest)
	gd := "sha256:" + hex.EncodeToString(gsum[:])
	blobs = LocalBlobs{gd: gpath}
	// vmdk-encode alone (C zlib) does not make it: the grains are zlib-ng's.
	if h := runSteps(t, blobs, append([]rehydrate.Step{{Op: rehydrate.OpBlob, Blob: gd}}, fsteps...)); h == want {
		t.Fatal("C zlib reproduces zlibng.vmdk: it tests nothing")
	}
	steps, gb, note, err := vmdkGrains(fsteps, r, int64(len(vm)), dir)
	if err != nil || gb == nil {
		t.Fatalf("vmdkGrains: %v (blob %v)", err, gb)
	}
	t.Logf("%s; %d-byte VMDK", note, len(vm))
	blobs[gb.digest] = gb.path
	return append([]rehydrate.Step{{Op: rehydrate.OpBlob, Blob: gd}}, steps...), blobs, gb, want
}

func runSteps(t *testing.T, blobs LocalBlobs, steps []rehydrate.Step) string {
	t.Helper()
	h := sha256.New()
	if _, err := rehydrate.Run(context.Background(), blobs, nil, steps, h); err != nil {
		t.Fatalf("steps %v: %v", steps, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// A VMDK whose grains zlib-ng made comes out bit for bit from its guest and reflate's data.
func TestVMDKGrainsZlibNG(t *testing.T) {
	steps, blobs, gb, want := zlibngSteps(t, false)
	if steps[1].Op != rehydrate.OpVMDKGrains || steps[1].Blob != gb.digest {
		t.Fatalf("steps %v, want vmdk-grains with the blob", steps)
	}
	if got := runSteps(t, blobs, steps); got != want {
		t.Fatal("vmdk-grains does not rebuild zlibng.vmdk")
	}
	if st, _ := os.Stat("testdata/zlibng.vmdk"); gb.size > st.Size()/5 {
		t.Fatalf("the grains blob has %d bytes for a %d-byte VMDK", gb.size, st.Size())
	}
}

// A damaged grains blob gives a one-line error, never a wrong image.
func TestVMDKGrainsBadBlob(t *testing.T) {
	steps, blobs, gb, want := zlibngSteps(t, false)
	good, _ := os.ReadFile(gb.path)
	for name, mut := range map[string]func(b []byte) []byte{
		"not a grains blob":    func(b []byte) []byte { return []byte("hello") },
		"truncated":            func(b []byte) []byte { return b[:len(b)/2] },
		"flipped recon byte":   func(b []byte) []byte { b[len(b)-5] ^= 0x40; return b },
		"future version":       func(b []byte) []byte { b[3] = 9; return b },
		"trailing garbage":     func(b []byte) []byte { return append(b, 1, 2, 3) },
		"flipped early recons": func(b []byte) []byte { b[40] ^= 0x01; return b },
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(gb.path, mut(bytes.Clone(good)), 0o644)
			h := sha256.New()
			_, err := rehydrate.Run(context.Background(), blobs, nil, steps, h)
			if err == nil {
				if hex.EncodeToString(h.Sum(nil)) == want {
					return // a byte the rebuild does not depend on (the output is checked)
				}
				t.Fatal("a damaged blob gave a wrong image without an error")
			}
			if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "blob") {
				t.Fatalf("error %q: want one line naming the blob", err)
			}
			t.Log(err)
		})
	}
}

// zlibngOVA is an OVA (a ustar archive: the OVF, then the disk) around vm.
func zlibngOVA(t *testing.T, vm []byte) []byte {
	t.Helper()
	ovf := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="disk.vmdk" ovf:id="file1"/></References>
</Envelope>
`)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range []struct {
		name string
		b    []byte
	}{{"coreos.ovf", ovf}, {"disk.vmdk", vm}} {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.b)), ModTime: time.Unix(1700000000, 0), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(m.b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// An OVA around a zlib-ng VMDK (vmware's, virtualbox's) comes out bit for bit too.
func TestVMDKGrainsZlibNGOVA(t *testing.T) {
	steps, blobs, _, want := zlibngSteps(t, true)
	if len(steps) != 3 || steps[1].Op != rehydrate.OpVMDKGrains || steps[2].Op != rehydrate.OpOVA {
		t.Fatalf("steps %v, want vmdk-grains then ova", steps)
	}
	if got := runSteps(t, blobs, steps); got != want {
		t.Fatal("vmdk-grains and ova do not rebuild the OVA")
	}
}

// BenchmarkVMDKGrains measures what a zlib-ng VMDK ($REHYDRATOR_ZLIBNG_VMDK, else
// testdata/zlibng.vmdk) costs before (vmdk-encode, then a delta of the grains C zlib misses)
// and with vmdk-grains (reflate's data of those grains), and the time each step takes.
func BenchmarkVMDKGrains(b *testing.B) {
	path := os.Getenv("REHYDRATOR_ZLIBNG_VMDK")
	if path == "" {
		path = "testdata/zlibng.vmdk"
	}
	target, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer target.Close()
	st, _ := target.Stat()
	tsize := st.Size()
	f := diskview.Sniff(target, tsize)
	v, err := f.Open(target, tsize)
	if err != nil {
		b.Fatal(err)
	}
	fsteps, err := v.Steps()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	gw, _ := os.Create(filepath.Join(dir, "guest"))
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(gw, h), io.NewSectionReader(v, 0, v.Size)); err != nil {
		b.Fatal(err)
	}
	gw.Close()
	gd := "sha256:" + hex.EncodeToString(h.Sum(nil))
	blobs := LocalBlobs{gd: gw.Name()}
	src := []rehydrate.Step{{Op: rehydrate.OpBlob, Blob: gd}}

	// Before: vmdk-encode's output and the delta from it to the shipped file.
	t0 := time.Now()
	enc, _ := os.Create(filepath.Join(dir, "enc"))
	if _, err := rehydrate.Run(context.Background(), blobs, nil, append(src, fsteps...), enc); err != nil {
		b.Fatal(err)
	}
	encTime := time.Since(t0)
	before, err := writeDelta(enc, tsize, target, tsize, dir, delta.Options{})
	if err != nil {
		b.Fatal(err)
	}
	enc.Close()

	t0 = time.Now()
	steps, gb, note, err := vmdkGrains(fsteps, target, tsize, dir)
	if err != nil || gb == nil {
		b.Fatalf("vmdkGrains: %v", err)
	}
	splitTime := time.Since(t0)
	blobs[gb.digest] = gb.path
	b.ResetTimer()
	for range b.N {
		t0 = time.Now()
		sum := sha256.New()
		if _, err := rehydrate.Run(context.Background(), blobs, nil, append(src, steps...), sum); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "grains-s")
	}
	b.StopTimer()
	b.Logf("%s: %d bytes; %s", path, tsize, note)
	b.Logf("before: vmdk-encode %.2fs, leftover delta %d bytes (%d packed, %.2f%% of the file)", encTime.Seconds(), before.size, before.packed, 100*float64(before.size)/float64(tsize))
	b.Logf("after:  vmdk-grains blob %d bytes (%d packed, %.3f%% of the file), split %.2fs", gb.size, gb.packed, 100*float64(gb.size)/float64(tsize), splitTime.Seconds())
	b.ReportMetric(float64(before.size), "before-B")
	b.ReportMetric(float64(gb.size), "after-B")
	b.ReportMetric(encTime.Seconds(), "encode-s")
}

// BenchmarkVMDKGrainsRehydrate times the vmdk-grains recipe step alone: the shipped VMDK
// ($REHYDRATOR_ZLIBNG_VMDK, else testdata/zlibng.vmdk) from its guest view and the grains'
// reconstruction data, into sha256, as `rehydrator rehydrate` runs it (tests/bench/vmdkgrains.sh
// sets it beside `xz -dc | sha256sum`). Splitting a large VMDK takes long, so with
// $REHYDRATOR_VMDKGRAINS_CACHE (a directory) the guest, steps and blob are kept there and
// reused while the VMDK's size and mtime match. Reports wall (grains-s) and CPU (cpu-s) time
// per run and checks the output's sha256.
func BenchmarkVMDKGrainsRehydrate(b *testing.B) {
	path := os.Getenv("REHYDRATOR_ZLIBNG_VMDK")
	if path == "" {
		path = "testdata/zlibng.vmdk"
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	dir := os.Getenv("REHYDRATOR_VMDKGRAINS_CACHE")
	if dir == "" {
		dir = b.TempDir()
	}
	type cached struct {
		Key          string
		Guest, Want  string // digests: the guest blob, the VMDK's sha256
		Steps        []rehydrate.Step
		Grains, Blob string // the grains blob's digest and path
		Note         string
		SplitCPU     float64 // seconds
		SplitWall    float64
	}
	key := fmt.Sprintf("%s %d %d", path, st.Size(), st.ModTime().UnixNano())
	var c cached
	if j, err := os.ReadFile(filepath.Join(dir, "cache.json")); err != nil || json.Unmarshal(j, &c) != nil || c.Key != key {
		c = cached{Key: key}
		target, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer target.Close()
		hw := sha256.New()
		io.Copy(hw, target)
		c.Want = hex.EncodeToString(hw.Sum(nil))
		f := diskview.Sniff(target, st.Size())
		v, err := f.Open(target, st.Size())
		if err != nil {
			b.Fatal(err)
		}
		fsteps, err := v.Steps()
		if err != nil {
			b.Fatal(err)
		}
		gw, _ := os.Create(filepath.Join(dir, "guest"))
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(gw, h), io.NewSectionReader(v, 0, v.Size)); err != nil {
			b.Fatal(err)
		}
		gw.Close()
		c.Guest = "sha256:" + hex.EncodeToString(h.Sum(nil))
		t0, cpu0 := time.Now(), processCPU()
		steps, gb, note, err := vmdkGrains(fsteps, target, st.Size(), dir)
		if err != nil || gb == nil {
			b.Fatalf("vmdkGrains: %v", err)
		}
		c.SplitWall, c.SplitCPU = time.Since(t0).Seconds(), (processCPU() - cpu0).Seconds()
		c.Steps, c.Grains, c.Blob, c.Note = steps, gb.digest, gb.path, note
		j, _ := json.Marshal(c)
		if err := os.WriteFile(filepath.Join(dir, "cache.json"), j, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	blobs := LocalBlobs{c.Guest: filepath.Join(dir, "guest"), c.Grains: c.Blob}
	steps := append([]rehydrate.Step{{Op: rehydrate.OpBlob, Blob: c.Guest}}, c.Steps...)
	b.ResetTimer()
	for range b.N {
		t0, cpu0 := time.Now(), processCPU()
		sum := sha256.New()
		if _, err := rehydrate.Run(context.Background(), blobs, nil, steps, sum); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "grains-s")
		b.ReportMetric((processCPU() - cpu0).Seconds(), "cpu-s")
		if got := hex.EncodeToString(sum.Sum(nil)); got != c.Want {
			b.Fatalf("rehydrated sha256 %s, the VMDK's is %s", got, c.Want)
		}
		// The same image by C zlib alone (vmdk-encode: other grain bytes), for reference.
		enc := slices.Clone(steps)
		for i := range enc {
			if enc[i].Op == rehydrate.OpVMDKGrains {
				enc[i] = rehydrate.Step{Op: rehydrate.OpVMDKEncode, Params: enc[i].Params}
			}
		}
		t0, cpu0 = time.Now(), processCPU()
		if _, err := rehydrate.Run(context.Background(), blobs, nil, enc, io.Discard); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "encode-s")
		b.ReportMetric((processCPU() - cpu0).Seconds(), "encode-cpu-s")
	}
	b.StopTimer()
	b.Logf("%s: %s; split %.1f s wall, %.1f s CPU (when the cache was made)", path, c.Note, c.SplitWall, c.SplitCPU)
}

// processCPU is the CPU time (user and system) the process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmdk-grains rebuilds grains on every core, in order: the image is the same with one worker
// and with many, and one grain's damaged reconstruction data stops it with an error naming
// the grain (never a panic or a wrong image).
func TestVMDKGrainsParallel(t *testing.T) {
	steps, blobs, gb, want := zlibngSteps(t, false)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 2, 8} {
		runtime.GOMAXPROCS(procs)
		if got := runSteps(t, blobs, steps); got != want {
			t.Fatalf("GOMAXPROCS %d: vmdk-grains does not rebuild zlibng.vmdk", procs)
		}
	}
	good, _ := os.ReadFile(gb.path)
	grains, err := rehydrate.ParseVMDKGrains(good)
	if err != nil || len(grains) < 3 {
		t.Fatalf("%d grains: %v", len(grains), err)
	}
	var idx []uint64
	for g := range grains {
		idx = append(idx, g)
	}
	slices.Sort(idx)
	g := idx[len(idx)/2]
	rec := bytes.Clone(grains[g])
	rec[len(rec)-3] ^= 0x10 // in the grain's end record: length and CRC-32 of the zlib stream
	grains[g] = rec
	os.WriteFile(gb.path, rehydrate.MarshalVMDKGrains(grains), 0o644)
	h := sha256.New()
	_, err = rehydrate.Run(context.Background(), blobs, nil, steps, h)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), fmt.Sprintf("grain %d ", g)) {
		t.Fatalf("grain %d damaged: error %v, want one line naming the grain", g, err)
	}
}

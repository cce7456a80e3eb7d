package reflate

import (
	"bytes"
	"encoding/gob"
	"os"
	"syscall"
	"testing"
	"time"
)

// grainSet is 64 KiB zlib streams of zlib-ng -6 (compress(), as qemu-img deflates VMDK
// grains) over the benchmark inputs, split by SplitZlib: the guest bytes and the
// reconstruction data of each, and the streams themselves.
type grainSet struct {
	Plain, Recon, Stream [][]byte
	PlainBytes           int
}

// Splitting them takes minutes on a loaded machine: with REFLATE_GRAINS_CACHE set to a file
// the set is kept there (gob) and read back by later runs; delete it when Split changes.
func zlibNGGrains(b *testing.B) *grainSet {
	cache := os.Getenv("REFLATE_GRAINS_CACHE")
	if cache != "" {
		if f, err := os.Open(cache); err == nil {
			defer f.Close()
			gs := &grainSet{}
			if err := gob.NewDecoder(f).Decode(gs); err != nil {
				b.Fatalf("%s: %v (delete it)", cache, err)
			}
			return gs
		}
	}
	lib := zlibNGLib()
	if lib == "" {
		b.Skip("zlib-ng compat library not built (scripts/build-zlib-ng.sh)")
	}
	gs := &grainSet{}
	inputs := benchInputs(b)
	for _, name := range []string{"text", "binary"} {
		for _, s := range pyZlibNG(b, lib, inputs[name], 6, 15, 8, 64<<10) {
			var plain bytes.Buffer
			rec, _, err := SplitZlib(bytes.NewReader(s), &plain)
			if err != nil {
				b.Fatal(err)
			}
			gs.Plain = append(gs.Plain, plain.Bytes())
			gs.Recon = append(gs.Recon, rec)
			gs.Stream = append(gs.Stream, s)
			gs.PlainBytes += plain.Len()
		}
	}
	if cache != "" {
		var buf bytes.Buffer
		if err := gob.NewEncoder(&buf).Encode(gs); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(cache, buf.Bytes(), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return gs
}

// BenchmarkGrainRebuild rebuilds 64 KiB zlib-ng grains one after the other on one goroutine
// (vmdk-grains runs one such loop per core): the per-stream cost of RebuildGzip.
//
//	go test -run '^$' -bench GrainRebuild -benchtime 3x ./reflate
func BenchmarkGrainRebuild(b *testing.B) {
	gs := zlibNGGrains(b)
	var out bytes.Buffer
	b.SetBytes(int64(gs.PlainBytes))
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		for i := range gs.Plain {
			out.Reset()
			if err := RebuildGzip(&out, bytes.NewReader(gs.Plain[i]), gs.Recon[i]); err != nil {
				b.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), gs.Stream[i]) {
				b.Fatalf("grain %d differs", i)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/1e6/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(len(gs.Plain)), "grains")
}

// cpuTime is the CPU time (user and system) the process has used: on a shared machine the
// benchmarks' wall times depend on the load, their CPU times much less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

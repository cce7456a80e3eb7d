package delta

import (
	"bytes"
	"io"
	"testing"

	librsync "github.com/balena-os/librsync-go"
)

// benchPair is a generated near-identical pair. Pairs are made inside each sub-benchmark (b.Loop
// resets the timer after that) so that only one pair, 512 MiB, is in memory at a time.
type benchPair struct {
	name string
	make func() (base, target []byte)
}

const benchSize = 256 << 20

var benchPairs = []benchPair{
	// The openstack-vs-qemu case: ~300 bytes differ, in a handful of places.
	{name: "edits300", make: func() ([]byte, []byte) {
		b := diskLike(81, benchSize)
		return b, editRuns(b, 82, 6, 50)
	}},
	// One 64 KiB cluster inserted (shifting the rest) plus the same edits.
	{name: "insert64k", make: func() ([]byte, []byte) {
		b := diskLike(83, benchSize)
		return b, insert(editRuns(b, 84, 6, 50), 100<<20+4321, randomBytes(85, 64<<10))
	}},
	// A raw disk: data islands in long zero runs; a few edits, one of them in a zero run.
	{name: "rawzeros", make: func() ([]byte, []byte) {
		b := make([]byte, benchSize)
		for i := 0; i < benchSize; i += 8 << 20 {
			copy(b[i:], diskLike(uint64(i), 1<<20))
		}
		t := editRuns(b, 86, 6, 50)
		copy(t[200<<20+77:], "ignition.platform.id=openstack")
		return b, t
	}},
	// The slow path: nothing in common but zero blocks, 64 MiB.
	{name: "unrelated64M", make: func() ([]byte, []byte) {
		return diskLike(87, 64<<20), diskLike(88, 64<<20)
	}},
}

func BenchmarkCompute(b *testing.B) {
	for _, p := range benchPairs {
		b.Run(p.name, func(b *testing.B) {
			base, target := p.make()
			var st Stats
			var err error
			b.SetBytes(int64(len(target)))
			for b.Loop() {
				st, err = Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), io.Discard, Options{})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.DeltaSize), "delta-bytes")
			b.ReportMetric(float64(st.LiteralBytes), "literal-bytes")
		})
	}
}

// BenchmarkLibrsyncGo runs balena-os/librsync-go v0.9.0 (BLAKE2 signature at 2 KiB blocks, then
// Delta) on the same pairs, to document why its engine was replaced.
func BenchmarkLibrsyncGo(b *testing.B) {
	for _, p := range benchPairs {
		b.Run(p.name, func(b *testing.B) {
			base, target := p.make()
			var cw countWriter
			b.SetBytes(int64(len(target)))
			for b.Loop() {
				sig, err := librsync.Signature(bytes.NewReader(base), io.Discard, 2048, 32, librsync.BLAKE2_SIG_MAGIC)
				if err != nil {
					b.Fatal(err)
				}
				cw = countWriter{w: io.Discard}
				if err := librsync.Delta(sig, bytes.NewReader(target), &cw); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cw.n), "delta-bytes")
		})
	}
}

package delta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// rng is a small deterministic generator (xorshift64*), fast enough for 256 MiB fixtures.
type rng uint64

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	*r = rng(x)
	return x * 2685821657736338717
}

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rng) fill(p []byte) {
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.next())
	}
	for ; i < len(p); i++ {
		p[i] = byte(r.next())
	}
}

func randomBytes(seed uint64, n int) []byte {
	r := rng(seed | 1)
	p := make([]byte, n)
	r.fill(p)
	return p
}

// diskLike makes n bytes that look like a disk image: 4 KiB blocks of random data, zero blocks,
// partly filled blocks (data then zero padding), low-entropy text, repeated blocks and long zero
// runs.
func diskLike(seed uint64, n int) []byte {
	r := rng(seed | 1)
	p := make([]byte, n)
	const bs = 4096
	var prev []byte
	for off := 0; off < n; {
		end := min(off+bs, n)
		blk := p[off:end]
		switch k := r.intn(100); {
		case k < 40:
			r.fill(blk)
		case k < 55: // zeros
		case k < 70:
			r.fill(blk[:r.intn(len(blk)+1)])
		case k < 80:
			for i := range blk {
				blk[i] = "abcdefghij klmnop\n"[r.intn(18)]
			}
		case k < 85 && prev != nil:
			copy(blk, prev)
		case k < 88: // long zero run
			end = min(off+bs*(16+r.intn(256)), n)
		case k < 92: // sparse structure: 8-byte entries, mostly zero
			for i := 0; i+8 <= len(blk); i += 8 {
				if r.intn(4) == 0 {
					binary.BigEndian.PutUint64(blk[i:], 0x8000000000000000|uint64(r.intn(1<<20))<<16)
				}
			}
		default:
			r.fill(blk)
		}
		prev = p[off:min(off+bs, n)]
		off = end
	}
	return p
}

// editBytes changes count single bytes at random places (each to a different value).
func editBytes(p []byte, seed uint64, count int) []byte {
	q := bytes.Clone(p)
	r := rng(seed | 1)
	for range count {
		i := r.intn(len(q))
		q[i] ^= byte(1 + r.intn(255))
	}
	return q
}

// editRuns changes runs of runLen bytes at count random places.
func editRuns(p []byte, seed uint64, count, runLen int) []byte {
	q := bytes.Clone(p)
	r := rng(seed | 1)
	for range count {
		i := r.intn(len(q) - runLen)
		for j := i; j < i+runLen; j++ {
			q[j] ^= byte(1 + r.intn(255))
		}
	}
	return q
}

func insert(p []byte, at int, ins []byte) []byte {
	q := make([]byte, 0, len(p)+len(ins))
	q = append(q, p[:at]...)
	q = append(q, ins...)
	return append(q, p[at:]...)
}

func remove(p []byte, at, n int) []byte {
	q := make([]byte, 0, len(p)-n)
	q = append(q, p[:at]...)
	return append(q, p[at+n:]...)
}

// streamOnly hides every method but Read, so Patch takes its discard path.
type streamOnly struct{ r io.Reader }

func (s streamOnly) Read(p []byte) (int, error) { return s.r.Read(p) }

type op struct {
	copy   bool
	off, n int64
}

// decodeOps lists a delta's commands (test helper; panics on malformed input).
func decodeOps(t testing.TB, d []byte) []op {
	t.Helper()
	cr := newCmdReader(bytes.NewReader(d))
	if err := cr.header(); err != nil {
		t.Fatal(err)
	}
	var ops []op
	for {
		cmd, err := cr.next()
		if err != nil {
			t.Fatal(err)
		}
		if cmd.isEnd() {
			return ops
		}
		if cmd.isLiteral() {
			if err := cr.literal(cmd, nil); err != nil {
				t.Fatal(err)
			}
			ops = append(ops, op{n: cmd.n})
			continue
		}
		ops = append(ops, op{copy: true, off: cmd.pos, n: cmd.n})
	}
}

// checkForward fails unless every copy starts at or after the end of the previous one.
func checkForward(t testing.TB, d []byte) {
	t.Helper()
	var end int64
	for _, o := range decodeOps(t, d) {
		if !o.copy {
			continue
		}
		if o.off < end {
			t.Fatalf("backward copy: offset %d < previous end %d", o.off, end)
		}
		end = o.off + o.n
	}
}

// roundTrip computes a delta and checks every way of applying it.
func roundTrip(t testing.TB, base, target []byte, opt Options) (Stats, []byte) {
	t.Helper()
	var buf bytes.Buffer
	st, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &buf, opt)
	if err != nil {
		t.Fatalf("Compute: %v", err)
	}
	d := buf.Bytes()
	if st.DeltaSize != int64(len(d)) {
		t.Fatalf("Stats.DeltaSize %d, wrote %d", st.DeltaSize, len(d))
	}
	if st.CopyBytes+st.LiteralBytes != int64(len(target)) || st.TargetSize != int64(len(target)) {
		t.Fatalf("stats do not add up: %+v, target %d", st, len(target))
	}
	checkForward(t, d)
	if n, err := OutputSize(bytes.NewReader(d)); err != nil || n != int64(len(target)) {
		t.Fatalf("OutputSize = %d, %v; want %d", n, err, len(target))
	}
	for _, tc := range []struct {
		name  string
		patch func(out io.Writer) error
	}{
		{"Patch/seeker", func(out io.Writer) error { return Patch(bytes.NewReader(base), bytes.NewReader(d), out) }},
		{"Patch/stream", func(out io.Writer) error {
			return Patch(streamOnly{bytes.NewReader(base)}, bytes.NewReader(d), out)
		}},
		{"PatchAt", func(out io.Writer) error {
			return PatchAt(bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), out)
		}},
	} {
		var out bytes.Buffer
		if err := tc.patch(&out); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(out.Bytes(), target) {
			t.Fatalf("%s: output differs from target (%d vs %d bytes)", tc.name, out.Len(), len(target))
		}
	}
	return st, d
}

func isErr(err, target error) bool { return errors.Is(err, target) }

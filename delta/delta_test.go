package delta

import (
	"bytes"
	"encoding/binary"
	"os"
	"slices"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	const size = 4 << 20
	disk := diskLike(1, size)
	zeros := make([]byte, size)
	rawDisk := bytes.Clone(zeros) // a raw disk: data islands in long zero runs
	for i := 0; i < size; i += 512 << 10 {
		copy(rawDisk[i:], randomBytes(uint64(i), 20000))
	}
	cluster := randomBytes(7, 64<<10)
	// A cluster that is half data, half zero padding, as qcow2 clusters often are.
	paddedCluster := append(randomBytes(8, 32<<10), make([]byte, 32<<10)...)
	zeroed := bytes.Clone(disk)
	clear(zeroed[1<<20 : 2<<20])

	// A qcow2-like file whose L2 table gains two entries (pointing at two clusters appended at
	// the end). Far ahead, the base holds another table that starts with those very entries:
	// the search must not jump there (regression: it did, and the 2 MiB it skipped became
	// literal).
	entry := func(p []byte, i, v int) {
		binary.BigEndian.PutUint64(p[8*i:], 0x8000000000000000|uint64(v)<<16)
	}
	l2 := make([]byte, 64<<10)
	for i := range 100 {
		entry(l2, i, 0x6600+i)
	}
	l2grown := bytes.Clone(l2)
	entry(l2grown, 100, 0x6700)
	entry(l2grown, 101, 0x6701)
	farL2 := make([]byte, 64<<10)
	entry(farL2, 0, 0x6700)
	entry(farL2, 1, 0x6701)
	odd := randomBytes(15, 1000)
	dataAfter := diskLike(14, 2<<20)
	qcowBase := slices.Concat(disk[:1<<20], l2, odd, dataAfter, make([]byte, 2<<20-1000), farL2, dataAfter[:256<<10])
	qcowTarget := slices.Concat(disk[:1<<20], l2grown, odd, dataAfter, make([]byte, 2<<20-1000), farL2, dataAfter[:256<<10], cluster, cluster)

	tests := []struct {
		name   string
		base   []byte
		target []byte
		opt    Options
		// maxLiteral and maxDelta bound the result (0: no bound).
		maxLiteral, maxDelta int64
	}{
		{name: "both empty", base: nil, target: nil, maxDelta: 5},
		{name: "empty base", base: nil, target: disk[:100000], maxLiteral: 100000},
		{name: "empty target", base: disk, target: nil, maxDelta: 5},
		{name: "tiny", base: []byte("hello"), target: []byte("hallo")},
		{name: "identical", base: disk, target: disk, maxLiteral: 0, maxDelta: 20},
		{name: "identical zeros", base: zeros, target: zeros, maxLiteral: 0, maxDelta: 20},
		{name: "300 scattered bytes", base: disk, target: editBytes(disk, 2, 300), maxLiteral: 300, maxDelta: 4096},
		{name: "5 edits of 60 bytes", base: disk, target: editRuns(disk, 3, 5, 60), maxLiteral: 300, maxDelta: 400},
		{name: "edit of 40 KiB", base: disk, target: editRuns(disk, 4, 1, 40<<10), maxLiteral: 40 << 10, maxDelta: 41 << 10},
		{name: "insert 64 KiB cluster", base: disk, target: insert(disk, 1<<20+12345, cluster), maxLiteral: 64 << 10, maxDelta: 65<<10 + 200},
		{name: "insert padded cluster", base: disk, target: insert(disk, 2<<20, paddedCluster), maxDelta: 65<<10 + 200},
		{name: "insert 1 byte", base: disk, target: insert(disk, 777777, []byte{42}), maxLiteral: 1, maxDelta: 40},
		{name: "delete 1 byte", base: disk, target: remove(disk, 777777, 1), maxLiteral: 0, maxDelta: 40},
		{name: "delete 64 KiB", base: disk, target: remove(disk, 3<<20, 64<<10), maxLiteral: 0, maxDelta: 40},
		{name: "insert then edits", base: disk, target: editBytes(insert(disk, 100000, cluster), 5, 50), maxLiteral: 64<<10 + 50, maxDelta: 66 << 10},
		{name: "appended tail", base: disk, target: append(bytes.Clone(disk), randomBytes(9, 5000)...), maxLiteral: 5000, maxDelta: 5100},
		{name: "truncated tail", base: disk, target: disk[:size-123457], maxLiteral: 0, maxDelta: 20},
		{name: "truncated head", base: disk, target: disk[123457:], maxLiteral: 0, maxDelta: 20},
		{name: "grown with zeros", base: disk, target: append(bytes.Clone(disk), zeros[:1<<20]...), maxDelta: 1<<20 + 100},
		{name: "raw disk edits", base: rawDisk, target: editBytes(rawDisk, 6, 100), maxLiteral: 100, maxDelta: 2000},
		{name: "raw disk shifted", base: rawDisk, target: insert(rawDisk, 1000, cluster), maxLiteral: 64 << 10, maxDelta: 66 << 10},
		{name: "l2 grown, duplicate far ahead", base: qcowBase, target: qcowTarget, maxLiteral: 128<<10 + 16, maxDelta: 128<<10 + 100},
		{name: "data zeroed", base: disk, target: zeroed},
		{name: "zeros to data", base: zeros, target: disk},
		{name: "random unrelated", base: randomBytes(10, 1<<20), target: randomBytes(11, 1<<20), maxDelta: 1<<20 + 100},
		{name: "halves swapped", base: disk, target: append(bytes.Clone(disk[size/2:]), disk[:size/2]...), maxDelta: size/2 + 1000},
		{name: "small blocks", base: disk, target: insert(editBytes(disk, 12, 100), 5000, []byte("inserted")), opt: Options{BlockSize: 64}, maxLiteral: 108},
		{name: "big blocks", base: disk, target: remove(editBytes(disk, 13, 100), 5000, 3000), opt: Options{BlockSize: 1 << 20}, maxLiteral: 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := roundTrip(t, tc.base, tc.target, tc.opt)
			t.Logf("%+v", st)
			if tc.maxLiteral > 0 && st.LiteralBytes > tc.maxLiteral {
				t.Errorf("literal bytes %d > %d", st.LiteralBytes, tc.maxLiteral)
			}
			if tc.maxDelta > 0 && st.DeltaSize > tc.maxDelta {
				t.Errorf("delta size %d > %d", st.DeltaSize, tc.maxDelta)
			}
		})
	}
}

func TestComputeOptions(t *testing.T) {
	for _, bs := range []int{-1, 1, 63, 32 << 20} {
		_, err := Compute(bytes.NewReader(nil), 0, bytes.NewReader(nil), 0, &bytes.Buffer{}, Options{BlockSize: bs})
		if err == nil {
			t.Errorf("block size %d: no error", bs)
		}
	}
	if bs := blockSizeFor(4096, 10<<30); bs != 4096 {
		t.Errorf("10 GiB base: block size %d, want 4096", bs)
	}
	if bs := blockSizeFor(4096, 100<<30); bs != 16384 {
		t.Errorf("100 GiB base: block size %d, want 16384", bs)
	}
	// The index of a 10 GiB base stays well under 256 MiB.
	x := newIndex(10<<30, blockSizeFor(4096, 10<<30))
	if mem := len(x.slots) * 8; mem > 64<<20 {
		t.Errorf("10 GiB base: index of %d MiB", mem>>20)
	}
}

func TestComputeShortInputs(t *testing.T) {
	base := diskLike(1, 1<<20)
	// The readers hold less than the sizes claim: Compute must fail, not write a bad delta.
	_, err := Compute(bytes.NewReader(base[:1000]), int64(len(base)), bytes.NewReader(base), int64(len(base)), &bytes.Buffer{}, Options{})
	if err == nil {
		t.Error("short base: no error")
	}
	_, err = Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(base[:1000]), int64(len(base)), &bytes.Buffer{}, Options{})
	if err == nil {
		t.Error("short target: no error")
	}
}

func TestEncoding(t *testing.T) {
	tests := []struct {
		off, n int64
		want   []byte
	}{
		{0, 1, []byte{0x45, 0, 1}},
		{255, 256, []byte{0x46, 0xff, 1, 0}},
		{256, 1 << 16, []byte{0x4b, 1, 0, 0, 1, 0, 0}},
		{1 << 32, 1 << 32, []byte{0x54, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}},
		{1 << 32, 5, []byte{0x51, 0, 0, 0, 1, 0, 0, 0, 0, 5}},
	}
	for _, tc := range tests {
		if got := appendCopyCmd(nil, tc.off, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("copy(%d, %d) = % x, want % x", tc.off, tc.n, got, tc.want)
		}
	}
	lits := []struct {
		n    int64
		want []byte
	}{
		{1, []byte{1}}, {64, []byte{0x40}}, {65, []byte{0x41, 65}}, {256, []byte{0x42, 1, 0}},
		{1 << 16, []byte{0x43, 0, 1, 0, 0}}, {1 << 32, []byte{0x44, 0, 0, 0, 1, 0, 0, 0, 0}},
	}
	for _, tc := range lits {
		if got := appendLiteralCmd(nil, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("literal(%d) = % x, want % x", tc.n, got, tc.want)
		}
	}
}

// A copy longer than maxCopyLen is split, so that librsync (which keeps the length in an int)
// applies it.
func TestEmitterSplitsLongCopies(t *testing.T) {
	var buf bytes.Buffer
	var st Stats
	em, err := newEmitter(&buf, nil, &st)
	if err != nil {
		t.Fatal(err)
	}
	if err := em.copy(10, 3<<30); err != nil {
		t.Fatal(err)
	}
	if err := em.end(); err != nil {
		t.Fatal(err)
	}
	ops := decodeOps(t, buf.Bytes())
	if len(ops) != 3 || ops[2].off != 10+2<<30 || ops[2].n != 1<<30 {
		t.Errorf("ops = %+v", ops)
	}
}

// Many random pairs of every kind, with random block sizes: every delta must round-trip.
func TestRandomPairs(t *testing.T) {
	r := rng(12345)
	for i := range 200 {
		n := 1 + r.intn(100000)
		var base []byte
		switch r.intn(4) {
		case 0:
			base = randomBytes(r.next(), n)
		case 1:
			base = diskLike(r.next(), n)
		case 2: // low entropy: many equal windows
			base = make([]byte, n)
			for j := range base {
				base[j] = byte(r.intn(3))
			}
		default:
			base = make([]byte, n)
		}
		target := editBytes(base, r.next(), r.intn(50))
		if r.intn(2) == 0 {
			target = insert(target, r.intn(len(target)), randomBytes(r.next(), r.intn(5000)))
		}
		if r.intn(3) == 0 {
			at := r.intn(len(target))
			target = remove(target, at, r.intn(len(target)-at))
		}
		opt := Options{BlockSize: minBlockSize + r.intn(8192)}
		if _, d := roundTrip(t, base, target, opt); t.Failed() {
			t.Fatalf("pair %d (n=%d, %+v): delta of %d bytes", i, n, opt, len(d))
		}
	}
}

// Patch reads the base from a pipe: an *os.File whose Seek fails.
func TestPatchFromPipe(t *testing.T) {
	base := diskLike(93, 2<<20)
	target := remove(editBytes(base, 94, 10), 100000, 300000)
	_, d := roundTrip(t, base, target, Options{})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		w.Write(base)
		w.Close()
	}()
	var out bytes.Buffer
	if err := Patch(r, bytes.NewReader(d), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), target) {
		t.Fatal("output differs")
	}
}

package delta

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func header() []byte { return []byte{0x72, 0x73, 0x02, 0x36} }

func build(parts ...[]byte) []byte {
	d := header()
	for _, p := range parts {
		d = append(d, p...)
	}
	return d
}

// applyAll runs the three appliers (and OutputSize) on a delta and returns their errors.
func applyAll(base, d []byte) map[string]error {
	errs := map[string]error{}
	errs["Patch/seeker"] = Patch(bytes.NewReader(base), bytes.NewReader(d), io.Discard)
	errs["Patch/stream"] = Patch(streamOnly{bytes.NewReader(base)}, bytes.NewReader(d), io.Discard)
	errs["PatchAt"] = PatchAt(bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), io.Discard)
	return errs
}

func TestPatchErrors(t *testing.T) {
	base := []byte("0123456789abcdef")
	tests := []struct {
		name     string
		delta    []byte
		sentinel error
		msg      string // substring of every applier's error
		size     bool   // OutputSize fails too
	}{
		{"empty", nil, ErrCorrupt, "truncated header at delta offset 0", true},
		{"bad magic", []byte("rs\x016\x00"), ErrCorrupt, "bad magic 0x72730136", true},
		{"no END", build(), ErrCorrupt, "no END command", true},
		{"no END after literal", build([]byte{3, 'a', 'b', 'c'}), ErrCorrupt, "no END command) at delta offset 8", true},
		{"truncated literal", build([]byte{10, 'a', 'b'}), ErrCorrupt, "truncated literal (2 of 10 bytes present) at delta offset 4: unexpected EOF", true},
		{"truncated literal length", build([]byte{0x42, 1}), ErrCorrupt, "truncated parameters of command 0x42 at delta offset 4", true},
		{"truncated copy", build([]byte{0x45, 1}), ErrCorrupt, "truncated parameters of command 0x45", true},
		{"unknown command", build([]byte{0x55}), ErrCorrupt, "unknown command byte 0x55 at delta offset 4", true},
		{"unknown command 0xff", build([]byte{1, 'x', 0xff, 0}), ErrCorrupt, "unknown command byte 0xff at delta offset 6", true},
		{"zero literal", build([]byte{0x41, 0, 0}), ErrCorrupt, "invalid literal length 0", true},
		{"zero copy", build([]byte{0x45, 0, 0, 0}), ErrCorrupt, "invalid copy (offset 0 length 0)", true},
		{"negative copy", build([]byte{0x51, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 0}), ErrCorrupt, "invalid copy", true},
		{"huge literal", build([]byte{0x44, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'a'}), ErrCorrupt, "truncated literal", true},
		{"copy past end", build([]byte{0x45, 10, 10, 0}), ErrShortBase, "copy past end of base (offset 10 length 10, base ", false},
		{"copy far past end", build([]byte{0x49, 1, 0, 4, 0}), ErrShortBase, "copy past end of base (offset 256 length 4", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for name, err := range applyAll(base, tc.delta) {
				if err == nil {
					t.Fatalf("%s: nil error", name)
				}
				if !errors.Is(err, tc.sentinel) {
					t.Errorf("%s: %v does not wrap %v", name, err, tc.sentinel)
				}
				if !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "delta: ") {
					t.Errorf("%s: %q does not say %q", name, err, tc.msg)
				}
			}
			_, err := OutputSize(bytes.NewReader(tc.delta))
			if tc.size && err == nil {
				t.Error("OutputSize: nil error")
			}
		})
	}
}

func TestPatchBackwardCopy(t *testing.T) {
	base := []byte("0123456789abcdef")
	d := build([]byte{0x45, 8, 4}, []byte{0x45, 0, 4}, []byte{0})
	err := Patch(bytes.NewReader(base), bytes.NewReader(d), io.Discard)
	if !errors.Is(err, ErrBackwardCopy) || !strings.Contains(err.Error(), "backward copy at delta offset 7") {
		t.Errorf("Patch: %v", err)
	}
	err = Patch(streamOnly{bytes.NewReader(base)}, bytes.NewReader(d), io.Discard)
	if !errors.Is(err, ErrBackwardCopy) {
		t.Errorf("Patch/stream: %v", err)
	}
	var out bytes.Buffer
	if err := PatchAt(bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), &out); err != nil || out.String() != "89ab0123" {
		t.Errorf("PatchAt = %q, %v", out.String(), err)
	}
}

// The base that Patch or PatchAt is given is shorter than the one the delta was made from.
func TestPatchShortBase(t *testing.T) {
	base := diskLike(41, 1<<20)
	target := editBytes(base, 42, 10)
	var buf bytes.Buffer
	if _, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &buf, Options{}); err != nil {
		t.Fatal(err)
	}
	short := base[:len(base)-1]
	for name, err := range applyAll(short, buf.Bytes()) {
		if !errors.Is(err, ErrShortBase) {
			t.Errorf("%s: %v, want ErrShortBase", name, err)
		}
	}
	// A ReaderAt that holds less than the size it is said to have.
	err := PatchAt(bytes.NewReader(short), int64(len(base)), bytes.NewReader(buf.Bytes()), io.Discard)
	if !errors.Is(err, ErrShortBase) {
		t.Errorf("PatchAt with a lying size: %v", err)
	}
}

// Every truncation of a valid delta fails, and so does every single-byte corruption of a
// command byte into an unknown one; flipping bits anywhere never panics.
func TestPatchTruncatedAndFlipped(t *testing.T) {
	base := diskLike(51, 256<<10)
	target := insert(editBytes(base, 52, 20), 1000, []byte("some inserted bytes"))
	_, d := roundTrip(t, base, target, Options{})
	for n := range len(d) {
		for name, err := range applyAll(base, d[:n]) {
			if err == nil {
				t.Fatalf("%s: delta truncated to %d of %d bytes: nil error", name, n, len(d))
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%s: truncated to %d: %v does not wrap ErrCorrupt", name, n, err)
			}
		}
		if _, err := OutputSize(bytes.NewReader(d[:n])); err == nil {
			t.Fatalf("OutputSize: truncated to %d: nil error", n)
		}
	}
	// Command byte offsets.
	var cmds []int64
	cr := newCmdReader(bytes.NewReader(d))
	if err := cr.header(); err != nil {
		t.Fatal(err)
	}
	for {
		cmd, err := cr.next()
		if err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd.at)
		if cmd.isEnd() {
			break
		}
		if cmd.isLiteral() {
			if err := cr.literal(cmd, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, at := range cmds {
		bad := bytes.Clone(d)
		bad[at] = 0x99
		for name, err := range applyAll(base, bad) {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "unknown command byte 0x99") {
				t.Fatalf("%s: command at %d flipped: %v", name, at, err)
			}
		}
	}
	for i := range d {
		for _, bit := range []byte{1, 0x10, 0x80} {
			bad := bytes.Clone(d)
			bad[i] ^= bit
			applyAll(base, bad) // must not panic; many flips still decode
			_, _ = OutputSize(bytes.NewReader(bad))
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("disk full")
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriteErrors(t *testing.T) {
	base := diskLike(61, 1<<20)
	target := editBytes(base, 62, 1000)
	_, err := Compute(bytes.NewReader(base), int64(len(base)), bytes.NewReader(target), int64(len(target)), &failWriter{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Compute: %v", err)
	}
	_, d := roundTrip(t, base, target, Options{})
	err = Patch(bytes.NewReader(base), bytes.NewReader(d), &failWriter{})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Patch: %v", err)
	}
	err = PatchAt(bytes.NewReader(base), int64(len(base)), bytes.NewReader(d), &failWriter{})
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("PatchAt: %v", err)
	}
}

// failSeeker is an io.Seeker that cannot seek, like a pipe behind an *os.File.
type failSeeker struct{ r io.Reader }

func (f failSeeker) Read(p []byte) (int, error)   { return f.r.Read(p) }
func (failSeeker) Seek(int64, int) (int64, error) { return 0, errors.New("illegal seek") }

func TestPatchSeekFails(t *testing.T) {
	base := diskLike(91, 1<<20)
	target := remove(editBytes(base, 92, 10), 1000, 50000)
	_, d := roundTrip(t, base, target, Options{})
	var out bytes.Buffer
	if err := Patch(failSeeker{bytes.NewReader(base)}, bytes.NewReader(d), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), target) {
		t.Fatal("output differs")
	}
	err := Patch(failSeeker{bytes.NewReader(base[:500000])}, bytes.NewReader(d), io.Discard)
	if !errors.Is(err, ErrShortBase) {
		t.Fatalf("short base: %v", err)
	}
}

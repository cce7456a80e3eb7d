package reflate

import (
	"bufio"
	"bytes"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"testing"
)

// inputs are the test inputs: text, binaries, zeros, random, tiny, empty and 1-byte.
func inputs(t testing.TB) map[string][]byte {
	in := map[string][]byte{
		"empty": nil,
		"1byte": {'x'},
		"tiny":  []byte("hello, hello, hello world\n"),
		"zeros": make([]byte, 300<<10),
	}
	rnd := make([]byte, 200<<10)
	rand.New(rand.NewSource(1)).Read(rnd)
	in["random"] = rnd
	var text []byte
	for _, f := range []string{"/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0"} {
		b, err := os.ReadFile(f)
		if err == nil {
			text = append(text, b...)
		}
	}
	if len(text) == 0 {
		t.Fatal("no text input")
	}
	in["text"] = text
	bin, err := os.ReadFile("/usr/bin/gzip")
	if err != nil {
		t.Fatal(err)
	}
	in["binary"] = bin
	// mixed: text, random, zeros, text again (stored blocks between compressed ones)
	in["mixed"] = append(append(append(append([]byte{}, text...), rnd[:70<<10]...), make([]byte, 5000)...), text[:20000]...)
	return in
}

// pyZlib compresses with the system's zlib through Python (raw deflate, wbits -15).
func pyZlib(t testing.TB, data []byte, level int) []byte {
	cmd := exec.Command("python3", "-c", `import sys,zlib
c=zlib.compressobj(int(sys.argv[1]),zlib.DEFLATED,-15)
sys.stdout.buffer.write(c.compress(sys.stdin.buffer.read())+c.flush())`, string(rune('0'+level)))
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 zlib: %v", err)
	}
	return out
}

// gzipRaw compresses with GNU gzip at level and strips the gzip wrapper.
func gzipRaw(t testing.TB, data []byte, level int) []byte {
	cmd := exec.Command("gzip", "-n", "-c", "-"+string(rune('0'+level)))
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	return stripGzip(t, out)
}

func stripGzip(t testing.TB, b []byte) []byte {
	if len(b) < 18 || b[0] != 0x1f || b[1] != 0x8b || b[3] != 0 {
		t.Fatalf("not a plain gzip member")
	}
	return b[10 : len(b)-8]
}

func checkRoundTrip(t *testing.T, name string, comp, data []byte) int {
	t.Helper()
	plain, recon, n, err := Split(comp)
	if err != nil {
		t.Fatalf("%s: split: %v", name, err)
	}
	if n != len(comp) || !bytes.Equal(plain, data) {
		t.Fatalf("%s: split gave %d bytes of plain, consumed %d of %d", name, len(plain), n, len(comp))
	}
	out, err := Rebuild(plain, recon)
	if err != nil {
		t.Fatalf("%s: rebuild: %v", name, err)
	}
	if !bytes.Equal(out, comp) {
		t.Fatalf("%s: rebuilt stream differs", name)
	}
	return len(recon)
}

// TestWrappers: a zlib-wrapped and a multi-member gzip stream split member by member, the
// stream's end found by Split (n) and what follows left alone.
func TestWrappers(t *testing.T) {
	data := inputs(t)["text"]
	cmd := exec.Command("python3", "-c", `import sys,zlib
sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read(), 9))`)
	cmd.Stdin = bytes.NewReader(data)
	z, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	plain, recon, n, err := Split(z[2:])
	if err != nil || n != len(z)-2-4 || !bytes.Equal(plain, data) {
		t.Fatalf("zlib wrapper: n %d of %d, err %v", n, len(z)-2, err)
	}
	if out, err := Rebuild(plain, recon); err != nil || !bytes.Equal(out, z[2:2+n]) {
		t.Fatalf("zlib wrapper: rebuild: %v", err)
	}
	// two gzip members, the second at level 1, back to back
	var multi []byte
	for _, l := range []string{"-9", "-1"} {
		cmd := exec.Command("gzip", "-n", "-c", l)
		cmd.Stdin = bytes.NewReader(data[:len(data)/2])
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		multi = append(multi, out...)
	}
	rest := multi
	for member := 0; len(rest) > 0; member++ {
		plain, recon, n, err := Split(rest[10:])
		if err != nil || !bytes.Equal(plain, data[:len(data)/2]) {
			t.Fatalf("member %d: %v", member, err)
		}
		out, err := Rebuild(plain, recon)
		if err != nil || !bytes.Equal(out, rest[10:10+n]) {
			t.Fatalf("member %d: rebuild: %v", member, err)
		}
		rest = rest[10+n+8:]
	}
}

// TestRoundTripTools: pigz, Info-ZIP zip, busybox gzip and libdeflate (whose streams the model
// predicts badly: still exact) on text and binary input, and zlib level 0 (stored blocks only).
func TestRoundTripTools(t *testing.T) {
	in := inputs(t)
	tools := []producer{
		{"pigz-6", toolRaw("pigz", "-n", "-c", "-6")},
		{"pigz-11", toolRaw("pigz", "-n", "-c", "-11")},
		{"zip-9", zipRaw("-9")},
		{"busybox-gzip", toolRaw("busybox", "gzip", "-c", "-9")},
		{"libdeflate-12", toolRaw("libdeflate-gzip", "-n", "-c", "-12")},
		{"zlib-0", func(t testing.TB, d []byte) []byte { return pyZlib(t, d, 0) }},
	}
	for _, name := range []string{"text", "binary", "mixed", "zeros", "1byte"} {
		for _, p := range tools {
			c := p.make(t, in[name])
			if c == nil {
				t.Logf("%-14s %-7s not deflated", p.name, name)
				continue
			}
			r := checkRoundTrip(t, p.name+"/"+name, c, in[name])
			t.Logf("%-14s %-7s %8d -> %8d recon %6d (%.3f%%)", p.name, name, len(in[name]), len(c), r, 100*float64(r)/float64(len(c)))
		}
	}
}

func TestRoundTripProducers(t *testing.T) {
	for name, data := range inputs(t) {
		for level := 1; level <= 9; level++ {
			c := pyZlib(t, data, level)
			r := checkRoundTrip(t, name, c, data)
			t.Logf("zlib -%d %-7s %8d -> %8d recon %6d (%.3f%%)", level, name, len(data), len(c), r, 100*float64(r)/float64(len(c)))
			c = gzipRaw(t, data, level)
			r = checkRoundTrip(t, name, c, data)
			t.Logf("gzip -%d %-7s %8d -> %8d recon %6d (%.3f%%)", level, name, len(data), len(c), r, 100*float64(r)/float64(len(c)))
		}
		for level := -2; level <= 9; level++ {
			c, _ := goFlate(data, level)
			r := checkRoundTrip(t, name, c, data)
			t.Logf("go   %2d %-7s %8d -> %8d recon %6d (%.3f%%)", level, name, len(data), len(c), r, 100*float64(r)/float64(len(c)))
		}
	}
}

// TestModelOnGoFlate: Go's compress/flate streams (matches up to 32768 back, its own trees and
// block sizes) through the zlib model rather than the exact path: still exact.
func TestModelOnGoFlate(t *testing.T) {
	in := inputs(t)
	for _, name := range []string{"text", "binary", "mixed", "1byte", "empty"} {
		for _, level := range []int{-2, 0, 1, 5, 9} {
			c, _ := goFlate(in[name], level)
			var pb bytes.Buffer
			recon, _, err := splitStream(bytes.NewReader(c), &pb, false)
			plain := pb.Bytes()
			if err != nil {
				t.Fatalf("%s level %d: %v", name, level, err)
			}
			out, err := Rebuild(plain, recon)
			if err != nil || !bytes.Equal(out, c) {
				t.Fatalf("%s level %d: rebuild: %v", name, level, err)
			}
			t.Logf("go %2d %-7s %8d -> %8d recon %6d (%.3f%%)", level, name, len(in[name]), len(c), len(recon), 100*float64(len(recon))/float64(len(c)))
		}
	}
}

// TestChunks: with small chunks, streams are split into many chunks (inside blocks too),
// each rebuilt by a matcher of its own started from the history and the recorded lazy state.
func TestChunks(t *testing.T) {
	defer func(a, b, c int) { chunkTarget, chunkMax, maxChunkBlocks = a, b, c }(chunkTarget, chunkMax, maxChunkBlocks)
	chunkTarget, chunkMax, maxChunkBlocks = 20<<10, 40<<10, 50
	in := inputs(t)
	for _, name := range []string{"text", "binary", "mixed", "zeros"} {
		for _, p := range []producer{
			{"zlib-4", func(t testing.TB, d []byte) []byte { return pyZlib(t, d, 4) }},
			{"zlib-1", func(t testing.TB, d []byte) []byte { return pyZlib(t, d, 1) }},
			{"gzip-9", toolRaw("gzip", "-n", "-c", "-9")},
			{"pigz-6", toolRaw("pigz", "-n", "-c", "-6", "-b", "32")},
			{"libdeflate-9", toolRaw("libdeflate-gzip", "-n", "-c", "-9")},
		} {
			c := p.make(t, in[name])
			r := checkRoundTrip(t, p.name+"/"+name, c, in[name])
			t.Logf("%-12s %-7s %8d -> %8d recon %d (%.3f%%)", p.name, name, len(in[name]), len(c), r, 100*float64(r)/float64(len(c)))
		}
	}
}

// TestStream: SplitStream through a bufio.Reader stops at the stream's last byte (the bytes
// after it are the caller's), and RebuildStream writes the same stream; a plain reader that
// is not a ByteReader works too.
func TestStream(t *testing.T) {
	data := inputs(t)["binary"]
	comp := gzipRaw(t, data, 9)
	trailer := []byte("TRAILER")
	br := bufio.NewReaderSize(bytes.NewReader(append(append([]byte{}, comp...), trailer...)), 4096)
	var plain bytes.Buffer
	recon, n, err := SplitStream(br, &plain)
	if err != nil || n != int64(len(comp)) || !bytes.Equal(plain.Bytes(), data) {
		t.Fatalf("split: n %d of %d, err %v", n, len(comp), err)
	}
	if rest, _ := io.ReadAll(br); !bytes.Equal(rest, trailer) {
		t.Fatalf("after the stream: %q", rest)
	}
	var out bytes.Buffer
	if err := RebuildStream(&out, io.MultiReader(&plain, bytes.NewReader(trailer)), recon); err != nil || !bytes.Equal(out.Bytes(), comp) {
		t.Fatalf("rebuild: %v", err)
	}
	// a reader that is not an io.ByteReader
	plain.Reset()
	if recon, n, err = SplitStream(io.MultiReader(bytes.NewReader(comp)), &plain); err != nil || n != int64(len(comp)) {
		t.Fatalf("split: %v", err)
	}
	if err := RebuildStream(io.Discard, bytes.NewReader(data[:len(data)-1]), recon); err == nil {
		t.Fatal("short plain data rebuilt")
	}
}

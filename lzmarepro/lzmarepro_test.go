//go:build cgo

package lzmarepro

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"
)

func sample(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"alpha ", "beta ", "gamma ", "delta\n", "epsilon ", "zeta ", "eta ", "theta "}
	var b bytes.Buffer
	for b.Len() < n {
		if r.IntN(50) == 0 {
			for range 20 {
				b.WriteByte(byte(r.Uint32()))
			}
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func TestMicroLZMA(t *testing.T) {
	enc, err := NewEncoder()
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	in := sample(300 << 10)
	p := Params{Preset: 6, DictSize: 8 << 20, Props: PresetProps}
	stream, n, err := enc.MicroLZMA(in, 16<<10, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(stream) > 16<<10 || n <= 0 || n >= len(in) {
		t.Fatalf("16 KiB limit: %d bytes of stream for %d of %d input bytes", len(stream), n, len(in))
	}
	if ^stream[0] != PresetProps {
		t.Errorf("first byte %#x, want the negated properties %#x", stream[0], ^byte(PresetProps))
	}
	stream = bytes.Clone(stream)
	out := make([]byte, n)
	if err := enc.DecodeMicroLZMA(out, stream, p.DictSize); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, in[:n]) {
		t.Fatal("decoded data differs")
	}
	// The limit is the stream's own length: the same stream again.
	if ok, err := enc.Reproduces(in, stream, n, p); err != nil || !ok {
		t.Errorf("Reproduces = %v, %v", ok, err)
	}
	if ok, err := enc.Probe(in, stream, p); err != nil || !ok {
		t.Errorf("Probe = %v, %v", ok, err)
	}
	if ok, _ := enc.Probe(in, stream, Params{Preset: 1, DictSize: 8 << 20, Props: PresetProps}); ok {
		t.Errorf("Probe with preset 1 passes a preset 6 stream")
	}
	if _, _, err := enc.MicroLZMA(in, 4096, Params{Preset: 12, DictSize: 1 << 20}); err == nil {
		t.Error("preset 12 accepted")
	}
	if err := enc.DecodeMicroLZMA(make([]byte, n+1), stream, p.DictSize); err == nil {
		t.Error("decoding one byte more than the stream holds succeeded")
	}
}

func xzTool(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("xz", args...)
	cmd.Stdin = bytes.NewReader(sample(1 << 20))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz %v: %v", args, err)
	}
	return out
}

func TestXZ(t *testing.T) {
	data := sample(1 << 20)
	for _, c := range []struct {
		args []string
		want XZOptions
	}{
		{[]string{"-9", "-c"}, XZOptions{Preset: 9, Check: CheckCRC64}},
		{[]string{"-6", "-c", "-C", "crc32"}, XZOptions{Preset: 6, Check: CheckCRC32}},
		{[]string{"-1", "-c", "-T2", "--block-size=1MiB"}, XZOptions{Preset: 1, Check: CheckCRC64, Threads: 1, BlockSize: 1 << 20}},
	} {
		ref := xzTool(t, c.args...)
		var got bytes.Buffer
		if _, err := XZEncode(&got, bytes.NewReader(data), c.want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), ref) {
			t.Errorf("xz %v: XZEncode(%v) gives %d bytes that differ from xz's %d", c.args, c.want, got.Len(), len(ref))
		}
		var plain bytes.Buffer
		if _, err := XZDecode(&plain, bytes.NewReader(ref)); err != nil || !bytes.Equal(plain.Bytes(), data) {
			t.Errorf("xz %v: XZDecode: %v", c.args, err)
		}
		if c.want.BlockSize != 0 {
			continue // DetectXZ tries liblzma's default blocks only
		}
		open := func() (io.Reader, error) { return bytes.NewReader(ref), nil }
		o, ok, err := DetectXZ(open, 64<<10)
		if err != nil || !ok || o != c.want {
			t.Errorf("xz %v: DetectXZ = %v, %v, %v; want %v", c.args, o, ok, err, c.want)
		}
	}
	// A stream no preset makes: xz -e.
	ref := xzTool(t, "-3e", "-c")
	open := func() (io.Reader, error) { return bytes.NewReader(ref), nil }
	if o, ok, err := DetectXZ(open, 64<<10); err != nil || ok {
		t.Errorf("xz -3e: DetectXZ = %v, %v, %v; want not found", o, ok, err)
	}
	if _, err := XZDecode(io.Discard, bytes.NewReader(ref[:len(ref)/2])); err == nil {
		t.Error("XZDecode of half a stream succeeded")
	}
	if _, err := XZCheckOf([]byte("not an xz stream")); err == nil {
		t.Error("XZCheckOf accepted garbage")
	}
}

package reflate

import (
	"bytes"
	"compress/flate"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The testdata/zlibng*.deflate streams were made by zlib-ng 2.2.2's compat library
// (scripts/build-zlib-ng.sh) through Python's zlib module:
//
//	compressobj(level, DEFLATED, -wbits, memLevel): c.compress(data) + c.flush()
//
// zlibng6-text: level 6, windowBits -15, memLevel 8 over 70,000 bytes of the GPL-3, Apache-2.0
// and GPL-2 texts (the window slides); zlibngL-wW: level L, windowBits -W (memLevel 9 for 12,
// as qemu's qcow2 clusters) over 8,000 bytes of the GPL-3 and 6,000 of /usr/bin/gzip.

// ngFileParams reads the level and window bits from a testdata file name.
func ngFileParams(t *testing.T, name string) (level, wbits int) {
	base := strings.TrimSuffix(filepath.Base(name), ".deflate")
	level, _ = strconv.Atoi(base[len("zlibng") : len("zlibng")+1])
	wbits = 15
	if i := strings.Index(base, "-w"); i >= 0 {
		wbits, _ = strconv.Atoi(base[i+2:])
	}
	if level == 0 {
		t.Fatalf("%s: no level in the name", name)
	}
	return level, wbits
}

// methodLevel returns the method and level bytes of reconstruction data.
func methodLevel(t testing.TB, recon []byte) (byte, byte) {
	if len(recon) < len(magic)+3 {
		t.Fatal("short reconstruction data")
	}
	return recon[len(magic)+1], recon[len(magic)+2]
}

// wholeChunk parses comp, a stream of one chunk, and returns that chunk, the stream's length
// and its CRC-32.
func wholeChunk(t testing.TB, comp []byte) (*chunk, int64, uint32) {
	p := &parser{br: &bitReader{r: bytes.NewReader(comp)}}
	c, err := p.next()
	if err != nil {
		t.Fatal(err)
	}
	if !c.last {
		t.Fatal("the stream is more than one chunk")
	}
	if c2, err := p.next(); c2 != nil || err != nil {
		t.Fatalf("a chunk after the last: %v", err)
	}
	return c, p.br.pos / 8, p.sum
}

// TestZlibNGTestdata: zlib-ng's streams at levels 1-9 and window bits 15 and 12 are predicted
// token for token by the zlib-ng model with their own parameters, and Split picks it.
func TestZlibNGTestdata(t *testing.T) {
	files, _ := filepath.Glob("testdata/zlibng*.deflate")
	if len(files) < 7 {
		t.Fatalf("%d zlib-ng streams in testdata", len(files))
	}
	for _, f := range files {
		comp, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		level, wbits := ngFileParams(t, f)
		s, _, _ := wholeChunk(t, comp)
		cs, ok := ngCorrections(s, ngParam(level, wbits, false), s.end+1, len(s.tokens))
		if !ok || len(cs) > 0 {
			t.Errorf("%s: %d corrections of %d tokens at level %d, window bits %d", f, len(cs), len(s.tokens), level, wbits)
		}
		plain, recon, n, err := Split(comp)
		if err != nil || n != len(comp) {
			t.Fatalf("%s: split: %v", f, err)
		}
		// Split tries the zlib-ng model only where the zlib model misses tokens: level 9 with
		// window bits 12 is deflate_slow with zlib's own parameters, which the zlib model
		// (memLevel 9, detected) predicts whole.
		m, l := methodLevel(t, recon)
		if m == methodZlib {
			zcs, _, _, err := corrections(s, detect(s), s.end+1, len(s.tokens))
			if err != nil || len(zcs) > 0 {
				t.Errorf("%s: method 1 with %d corrections (%v)", f, len(zcs), err)
			}
		} else if m != methodZlibNG || l != ngParam(level, wbits, false) {
			t.Errorf("%s: method %d, level byte %#x", f, m, l)
		}
		if len(recon) > 64 {
			t.Errorf("%s: %d bytes of reconstruction data", f, len(recon))
		}
		if out, err := Rebuild(plain, recon); err != nil || !bytes.Equal(out, comp) {
			t.Fatalf("%s: rebuild: %v", f, err)
		}
	}
}

// ngForced is reconstruction data by the zlib-ng model at level and wbits whatever its cost,
// so that streams of other producers exercise the corrections.
func ngForced(t testing.TB, comp []byte, level, wbits int) (plain, recon []byte) {
	return ngForcedParam(t, comp, ngParam(level, wbits, false))
}

func ngForcedParam(t testing.TB, comp []byte, param byte) (plain, recon []byte) {
	s, n, sum := wholeChunk(t, comp)
	cs, ok := ngCorrections(s, param, s.end+1, len(s.tokens))
	if !ok {
		t.Fatal("model failed")
	}
	recon = appendNGHeader(nil, param, n, sum, s.end)
	recon = append(recon, encodeNGBody(s, cs)...)
	return s.data[:s.end], recon
}

// TestZlibNGForced: streams the model does not predict (zlib 1.2.13, gzip, Go, stored blocks,
// empty and 1-byte input) rebuild exactly through method 2 at every level, from their
// corrections.
func TestZlibNGForced(t *testing.T) {
	in := inputs(t)
	for _, name := range []string{"text", "binary", "mixed", "zeros", "random", "tiny", "1byte", "empty"} {
		data := in[name]
		if len(data) > 120<<10 {
			data = data[:120<<10]
		}
		streams := map[string][]byte{"zlib6": pyZlib(t, data, 6), "gzip9": gzipRaw(t, data, 9)}
		streams["goflate1"], _ = goFlate(data, 1)
		streams["stored"], _ = goFlate(data, 0)
		for sn, comp := range streams {
			for level := 1; level <= 9; level++ {
				for _, wbits := range []int{15, 12} {
					caps := []bool{false}
					if ngLevels[level].strategy == ngMedium {
						caps = append(caps, true)
					}
					for _, c := range caps {
						plain, recon := ngForcedParam(t, comp, ngParam(level, wbits, c))
						out, err := Rebuild(plain, recon)
						if err != nil || !bytes.Equal(out, comp) {
							t.Fatalf("%s %s level %d wbits %d cap %v: rebuild: %v", name, sn, level, wbits, c, err)
						}
					}
				}
			}
		}
	}
}

// TestZlibNGDamage: damaged method 2 reconstruction data or plain data gives an error.
func TestZlibNGDamage(t *testing.T) {
	comp, err := os.ReadFile("testdata/zlibng6-w12.deflate")
	if err != nil {
		t.Fatal(err)
	}
	_, recon0 := ngForced(t, pyZlib(t, inputs(t)["text"][:20000], 6), 6, 15) // many corrections
	plain, recon1, _, err := Split(comp)
	if err != nil {
		t.Fatal(err)
	}
	for k, recon := range [][]byte{recon0, recon1} {
		p := plain
		if k == 0 {
			p = inputs(t)["text"][:20000]
		}
		for i := range recon {
			for _, x := range []byte{1, 0x80, 0xff} {
				d := bytes.Clone(recon)
				d[i] ^= x
				if out, err := Rebuild(p, d); err == nil && !bytes.Equal(out, mustRebuild(t, p, recon)) {
					t.Fatalf("recon %d: byte %d ^ %#x: a wrong stream without an error", k, i, x)
				}
			}
		}
		d := bytes.Clone(p)
		d[len(d)/2] ^= 1
		if _, err := Rebuild(d, recon); err == nil {
			t.Fatalf("recon %d: damaged plain data rebuilt without an error", k)
		}
	}
}

func mustRebuild(t *testing.T, plain, recon []byte) []byte {
	out, err := Rebuild(plain, recon)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestZlibNGProducer: with the zlib-ng library built (scripts/build-zlib-ng.sh), its streams
// of every level and both of qemu's parameter sets, over the test inputs whole and in 64 KiB
// pieces, split and rebuild with little reconstruction data.
func TestZlibNGProducer(t *testing.T) {
	lib := zlibNGLib()
	if lib == "" {
		t.Skip("zlib-ng compat library not built (scripts/build-zlib-ng.sh); testdata covers the model")
	}
	in := inputs(t)
	for _, name := range []string{"text", "binary", "mixed", "zeros", "random", "tiny", "1byte", "empty"} {
		for level := 1; level <= 9; level++ {
			if name != "text" && name != "binary" && level%4 != 1 {
				continue // levels 1, 5 and 9 for the special inputs: each run starts Python
			}
			for _, par := range [][3]int{{-15, 8, 0}, {-12, 9, 0}, {-15, 8, 64 << 10}} {
				comp, recon := 0, 0
				var plains []byte
				for _, s := range pyZlibNG(t, lib, in[name], level, par[0], par[1], par[2]) {
					plain, r, n, err := Split(s)
					if err != nil || n != len(s) {
						t.Fatalf("%s level %d %v: split: %v", name, level, par, err)
					}
					if out, err := Rebuild(plain, r); err != nil || !bytes.Equal(out, s) {
						t.Fatalf("%s level %d %v: rebuild: %v", name, level, par, err)
					}
					plains = append(plains, plain...)
					recon += len(r)
					comp += len(s)
				}
				if !bytes.Equal(plains, in[name]) {
					t.Fatalf("%s level %d %v: plain data differs", name, level, par)
				}
				// random data is stored; the others must cost a header and a few bytes a block
				if name == "text" || name == "binary" || name == "mixed" {
					if share := float64(recon) / float64(comp); share > 0.005 {
						t.Errorf("%s level %d %v: reconstruction data %.2f%% of %d bytes", name, level, par, 100*share, comp)
					}
				}
			}
		}
	}
}

// FuzzZlibNGRebuild: method 2 reconstruction data with corrections (a zlib 1.2.13 stream
// forced through the zlib-ng model), damaged anywhere, gives an error or a stream of the plain
// data, never a panic.
func FuzzZlibNGRebuild(f *testing.F) {
	data := inputs(f)["text"][:4000]
	for _, level := range []int{1, 2, 6, 9} {
		plain, recon := ngForced(f, pyZlib(f, data, 6), level, 12)
		f.Add(plain, recon)
		d := bytes.Clone(recon)
		d[len(d)/2] ^= 0x10
		f.Add(plain, d)
	}
	f.Fuzz(func(t *testing.T, plain, recon []byte) {
		out, err := Rebuild(plain, recon)
		if err != nil {
			return
		}
		got, err := io.ReadAll(flate.NewReader(bytes.NewReader(out)))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("rebuilt stream does not decode to the plain data: %v", err)
		}
	})
}

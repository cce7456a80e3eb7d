package reflate

import (
	"bytes"
	"fmt"
	"os/exec"
	"testing"
)

// pyZlibParams compresses with the system's zlib through Python: raw deflate with the given
// level, windowBits and memLevel, in one call (as qemu compresses a qcow2 cluster).
func pyZlibParams(t testing.TB, data []byte, level, wbits, memLevel int) []byte {
	cmd := exec.Command("python3", "-c", `import sys,zlib
a=[int(x) for x in sys.argv[1:]]
c=zlib.compressobj(a[0],zlib.DEFLATED,-a[1],a[2])
sys.stdout.buffer.write(c.compress(sys.stdin.buffer.read())+c.flush())`, fmt.Sprint(level), fmt.Sprint(wbits), fmt.Sprint(memLevel))
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 zlib: %v", err)
	}
	return out
}

// TestWindowMemLevel: zlib streams made with other windowBits and memLevel than the defaults
// (qemu's qcow2 clusters: 12 and 9) are detected and cost no more than the defaults.
func TestWindowMemLevel(t *testing.T) {
	in := inputs(t)
	for _, name := range []string{"text", "binary"} {
		data := in[name]
		for _, p := range [][3]int{{6, 12, 9}, {6, 15, 9}, {9, 12, 9}, {1, 12, 9}, {6, 10, 4}, {6, 15, 8}, {9, 9, 1}} {
			var total, rtotal int
			for off := 0; off < len(data); off += 64 << 10 {
				piece := data[off:min(len(data), off+64<<10)]
				c := pyZlibParams(t, piece, p[0], p[1], p[2])
				r := checkRoundTrip(t, fmt.Sprint(name, p), c, piece)
				total += len(c)
				rtotal += r
				if off == 0 {
					h, err := readHeader(mustRecon(t, c))
					if err != nil || h.m != (modelCfg{p[0], p[1], p[2]}) {
						t.Logf("%s %v: detected %+v (%v)", name, p, h.m, err)
					}
				}
			}
			t.Logf("%-6s level %d windowBits %2d memLevel %d: %8d -> %7d, recon %5d (%.3f%%)", name, p[0], p[1], p[2], len(data), total, rtotal, 100*float64(rtotal)/float64(total))
			if p[2] >= 8 && float64(rtotal) > 0.005*float64(total) {
				t.Errorf("%s %v: recon %.3f%% of the compressed size", name, p, 100*float64(rtotal)/float64(total))
			}
		}
	}
}

func mustRecon(t testing.TB, c []byte) []byte {
	_, recon, _, err := Split(c)
	if err != nil {
		t.Fatal(err)
	}
	return recon
}

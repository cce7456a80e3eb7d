package reflate

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// zlibNGLib is the directory of zlib-ng's compat libz.so.1 (scripts/build-zlib-ng.sh), or ""
// when it is not built: REFLATE_ZLIB_NG_LIB, else the tools cache.
func zlibNGLib() string {
	dir := os.Getenv("REFLATE_ZLIB_NG_LIB")
	if dir == "" {
		root := os.Getenv("REHYDRATOR_TOOLS_CACHE")
		if root == "" {
			root = "/var/cache/rehydrator-tools"
		}
		dir = filepath.Join(root, "zlib-ng-compat-2.2.2", "lib")
	}
	if _, err := os.Stat(filepath.Join(dir, "libz.so.1")); err != nil {
		return ""
	}
	return dir
}

// pyZlibNG compresses data with zlib-ng's compat deflate (Python's zlib module loads libz.so.1
// from lib) at level with windowBits wbits (negative: raw deflate) and memLevel mem. With
// chunk > 0 every chunk bytes are a stream of their own, concatenated, as qemu-img deflates
// each VMDK grain or qcow2 cluster alone; the streams are returned one by one.
func pyZlibNG(t testing.TB, lib string, data []byte, level, wbits, mem, chunk int) [][]byte {
	cmd := exec.Command("python3", "-c", `import sys,zlib,struct
lv,wb,mem,ch=map(int,sys.argv[1:5])
d=sys.stdin.buffer.read()
if zlib.ZLIB_RUNTIME_VERSION.find("zlib-ng")<0: sys.exit("not zlib-ng: "+zlib.ZLIB_RUNTIME_VERSION)
for p in ([d] if ch==0 else [d[i:i+ch] for i in range(0,len(d),ch)]):
  c=zlib.compressobj(lv,zlib.DEFLATED,wb,mem)
  s=c.compress(p)+c.flush()
  sys.stdout.buffer.write(struct.pack("<I",len(s))+s)`,
		fmt.Sprint(level), fmt.Sprint(wbits), fmt.Sprint(mem), fmt.Sprint(chunk))
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+lib)
	cmd.Stdin = bytes.NewReader(data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 zlib-ng: %v %s", err, stderr.Bytes())
	}
	var streams [][]byte
	for len(out) >= 4 {
		n := int(out[0]) | int(out[1])<<8 | int(out[2])<<16 | int(out[3])<<24
		streams = append(streams, out[4:4+n])
		out = out[4+n:]
	}
	return streams
}

// zlibNGProducers: zlib-ng 2.2.2's compat deflate at levels 1-9 with the two parameter sets
// qemu uses: compress() (windowBits 15, memLevel 8: VMDK grains) and qcow2's
// deflateInit2(-12, memLevel 9) for compressed clusters; whole inputs and in 64 KiB pieces.
type zngProducer struct {
	name                     string
	level, wbits, mem, chunk int
}

func zlibNGProducers() []zngProducer {
	var ps []zngProducer
	for l := 1; l <= 9; l++ {
		ps = append(ps, zngProducer{fmt.Sprintf("zlibng-%d", l), l, -15, 8, 0})
	}
	for l := 1; l <= 9; l++ {
		ps = append(ps, zngProducer{fmt.Sprintf("zlibng-%d-w12m9", l), l, -12, 9, 0})
	}
	ps = append(ps, zngProducer{"zlibng-6-grains", 6, -15, 8, 64 << 10},
		zngProducer{"zlibng-6-w12m9-clusters", 6, -12, 9, 64 << 10})
	return ps
}

// BenchmarkZlibNG reports, per input and zlib-ng producer, the reconstruction data as a share
// of the compressed streams (recon-%, summed over the pieces for the chunked producers) and
// the time to rebuild them. Needs scripts/build-zlib-ng.sh's library.
//
//	go test -run '^$' -bench ZlibNG -benchtime 1x ./reflate
func BenchmarkZlibNG(b *testing.B) {
	lib := zlibNGLib()
	if lib == "" {
		b.Skip("zlib-ng compat library not built (scripts/build-zlib-ng.sh)")
	}
	inputs := benchInputs(b)
	for _, name := range []string{"text", "binary"} {
		data := inputs[name]
		if data == nil {
			continue
		}
		for _, p := range zlibNGProducers() {
			streams := pyZlibNG(b, lib, data, p.level, p.wbits, p.mem, p.chunk)
			b.Run(name+"/"+p.name, func(b *testing.B) {
				type split struct{ plain, recon []byte }
				var ss []split
				comp, recon := 0, 0
				for _, s := range streams {
					plain, r, _, err := Split(s)
					if err != nil {
						b.Fatal(err)
					}
					ss = append(ss, split{plain, r})
					comp += len(s)
					recon += len(r)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for _, s := range ss {
						if _, err := Rebuild(s.plain, s.recon); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				b.ReportMetric(100*float64(recon)/float64(comp), "recon-%")
				b.ReportMetric(float64(recon), "recon-bytes")
				b.ReportMetric(float64(comp), "comp-bytes")
			})
		}
	}
}

// Command xzmem measures the peak memory of re-encoding an .xz stream at a preset with
// lzmarepro.XZEncode (liblzma's single-threaded encoder, as the osmet files are made), for
// tests/bench/xz-osmet-mem.sh. The input is a file (an .xz stream, decoded first into a temp
// file, or plain data with -plain) or synthetic data of -size MiB (-kind random, text, zeros or
// disk: a disk-like mix of zero runs, random blocks and repeated blocks). It prints the process's
// VmHWM before and after encoding, so liblzma's share is the difference.
package main

import (
	"bufio"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/rehydrator/rehydrator/lzmarepro"
)

func main() {
	in := flag.String("in", "", "input file (an .xz stream unless -plain)")
	plain := flag.Bool("plain", false, "the input file is plain data")
	size := flag.Int64("size", 0, "synthetic input of this many MiB")
	kind := flag.String("kind", "disk", "synthetic data: random, text, zeros or disk")
	preset := flag.Uint("preset", 9, "xz preset")
	flag.Parse()
	debug.SetGCPercent(20)
	if err := run(*in, *plain, *size, *kind, uint32(*preset)); err != nil {
		fmt.Fprintln(os.Stderr, "xzmem:", err)
		os.Exit(1)
	}
}

func run(in string, plain bool, size int64, kind string, preset uint32) error {
	var src io.Reader
	var n int64
	var orig []byte // the .xz stream, to compare
	switch {
	case in != "" && plain:
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, _ := f.Stat()
		src, n = f, fi.Size()
	case in != "":
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		tmp, err := os.CreateTemp("", "xzmem-")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		if n, err = lzmarepro.XZDecode(tmp, bufio.NewReader(f)); err != nil {
			return err
		}
		if _, err := tmp.Seek(0, 0); err != nil {
			return err
		}
		src = bufio.NewReader(tmp)
		h := sha256.New()
		f.Seek(0, 0)
		io.Copy(h, f)
		orig = h.Sum(nil)
	default:
		n = size << 20
		src = io.LimitReader(&synth{kind: kind, r: rand.New(rand.NewPCG(1, 2))}, n)
	}
	before := hwm()
	h := sha256.New()
	start := time.Now()
	out, err := lzmarepro.XZEncode(h, src, lzmarepro.XZOptions{Preset: preset, Check: lzmarepro.CheckCRC64})
	if err != nil {
		return err
	}
	same := ""
	if orig != nil {
		same = fmt.Sprintf(", identical to the input stream: %v", string(orig) == string(h.Sum(nil)))
	}
	fmt.Printf("input %d bytes (%.1f MiB) -> %d bytes, preset %d, %.1fs; VmHWM before %d MiB, after %d MiB%s\n",
		n, float64(n)/(1<<20), out, preset, time.Since(start).Seconds(), before>>10, hwm()>>10, same)
	return nil
}

// hwm is the process's peak resident set (VmHWM) in KiB.
func hwm() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

// synth yields synthetic data in 4 KiB blocks.
type synth struct {
	kind string
	r    *rand.Rand
	buf  []byte
	prev [][]byte
}

var words = strings.Fields("usr lib share bin the of and to in is for on with as by at from this that config data file systemd python perl module locale")

func (s *synth) Read(p []byte) (int, error) {
	if len(s.buf) == 0 {
		b := make([]byte, 4096)
		switch k := s.kind; {
		case k == "zeros":
		case k == "random" || (k == "disk" && s.r.IntN(8) < 3):
			for i := range b {
				b[i] = byte(s.r.Uint32())
			}
		case k == "text" || (k == "disk" && s.r.IntN(5) < 2):
			var sb strings.Builder
			for sb.Len() < len(b) {
				sb.WriteString(words[s.r.IntN(len(words))])
				sb.WriteByte(" \n/"[s.r.IntN(3)])
			}
			copy(b, sb.String())
		case k == "disk" && len(s.prev) > 0 && s.r.IntN(2) == 0:
			copy(b, s.prev[s.r.IntN(len(s.prev))])
		}
		if len(s.prev) < 256 {
			s.prev = append(s.prev, b)
		} else {
			s.prev[s.r.IntN(256)] = b
		}
		s.buf = b
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// Command deltabench computes a delta between two files with package delta and reports its size
// and timing, for tests/bench/delta-vs-rdiff.sh. With -verify it also applies the delta with
// delta.Patch (base read as a stream) and checks the output against the target. With
// -librsync-go it runs balena-os/librsync-go instead (BLAKE2 signature at 2 KiB blocks, then
// Delta), the engine package delta replaced, for comparison.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	librsync "github.com/balena-os/librsync-go"

	"github.com/rehydrator/rehydrator/delta"
)

func main() {
	out := flag.String("o", "", "write the delta to this file (default: discard)")
	bs := flag.Int("bs", 0, "block size (0: default)")
	verify := flag.Bool("verify", false, "apply the delta with delta.Patch and compare with the target")
	lrs := flag.Bool("librsync-go", false, "run librsync-go v0.9.0 (signature + delta) instead")
	flag.BoolVar(&aligned, "aligned", false, "run delta.ComputeAligned (what the planner runs first for same-size pairs) instead of delta.Compute")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: deltabench [-o DELTA] [-bs N] [-verify] BASE TARGET")
		os.Exit(2)
	}
	run := run
	if *lrs {
		run = func(base, target, out string, _ int, _ bool) error { return runLibrsync(base, target, out) }
	}
	if err := run(flag.Arg(0), flag.Arg(1), *out, *bs, *verify); err != nil {
		fmt.Fprintln(os.Stderr, "deltabench:", err)
		os.Exit(1)
	}
}

// aligned selects delta.ComputeAligned.
var aligned bool

func open(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func run(basePath, targetPath, outPath string, bs int, verify bool) error {
	base, baseSize, err := open(basePath)
	if err != nil {
		return err
	}
	defer base.Close()
	target, targetSize, err := open(targetPath)
	if err != nil {
		return err
	}
	defer target.Close()

	var w io.Writer = io.Discard
	var buf bytes.Buffer
	if verify {
		w = &buf
	}
	var f *os.File
	if outPath != "" {
		if f, err = os.Create(outPath); err != nil {
			return err
		}
		defer f.Close()
		w = io.MultiWriter(f, w)
	}
	start := time.Now()
	var st delta.Stats
	if aligned {
		st, err = delta.ComputeAligned(base, baseSize, target, targetSize, w)
	} else {
		st, err = delta.Compute(base, baseSize, target, targetSize, w, delta.Options{BlockSize: bs})
	}
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if f != nil {
		if err := f.Close(); err != nil {
			return err
		}
	}
	fmt.Printf("compute: %.3f s  %.0f MB/s  delta %d bytes  literal %d bytes in %d  copies %d\n",
		elapsed.Seconds(), float64(targetSize)/elapsed.Seconds()/1e6, st.DeltaSize, st.LiteralBytes, st.Literals, st.Copies)
	if !verify {
		return nil
	}
	if _, err := base.Seek(0, io.SeekStart); err != nil {
		return err
	}
	start = time.Now()
	got := sha256.New()
	if err := delta.Patch(base, &buf, got); err != nil {
		return err
	}
	patchTime := time.Since(start)
	want := sha256.New()
	if _, err := io.Copy(want, io.NewSectionReader(target, 0, targetSize)); err != nil {
		return err
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		return fmt.Errorf("patched output differs from the target")
	}
	fmt.Printf("patch:   %.3f s  output sha256 matches the target\n", patchTime.Seconds())
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func runLibrsync(basePath, targetPath, outPath string) error {
	base, _, err := open(basePath)
	if err != nil {
		return err
	}
	defer base.Close()
	target, targetSize, err := open(targetPath)
	if err != nil {
		return err
	}
	defer target.Close()
	cw := &countWriter{w: io.Discard}
	if outPath != "" {
		f, err := os.Create(outPath)
		if err != nil {
			return err
		}
		defer f.Close()
		cw.w = f
	}
	start := time.Now()
	sig, err := librsync.Signature(bufio.NewReaderSize(base, 1<<20), io.Discard, 2048, 32, librsync.BLAKE2_SIG_MAGIC)
	if err != nil {
		return err
	}
	sigTime := time.Since(start)
	if err := librsync.Delta(sig, target, cw); err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Printf("librsync-go: %.3f s (signature %.3f s)  %.0f MB/s  delta %d bytes\n",
		elapsed.Seconds(), sigTime.Seconds(), float64(targetSize)/elapsed.Seconds()/1e6, cw.n)
	return nil
}

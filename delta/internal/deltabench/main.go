// Command deltabench computes a delta between two files with package delta and reports its size
// and timing, for tests/bench/delta-vs-rdiff.sh. With -verify it also applies the delta with
// delta.Patch (base read as a stream) and checks the output against the target.
package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rehydrator/rehydrator/delta"
)

func main() {
	out := flag.String("o", "", "write the delta to this file (default: discard)")
	bs := flag.Int("bs", 0, "block size (0: default)")
	verify := flag.Bool("verify", false, "apply the delta with delta.Patch and compare with the target")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: deltabench [-o DELTA] [-bs N] [-verify] BASE TARGET")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), flag.Arg(1), *out, *bs, *verify); err != nil {
		fmt.Fprintln(os.Stderr, "deltabench:", err)
		os.Exit(1)
	}
}

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
	st, err := delta.Compute(base, baseSize, target, targetSize, w, delta.Options{BlockSize: bs})
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

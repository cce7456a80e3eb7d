// Command initrdgzip measures what expanding a gzip initramfs gains in the ISO routes, on an
// initramfs shaped like a real release's: the fixture's initrd.img holds the tree's initramfs
// (an xz newc cpio of files the disk's root has too) with a small gzip cpio appended; this
// command takes that cpio out of the xz, compresses it with GNU gzip -9 as a real live
// initramfs is, and computes the any-order delta (as the ISO routes do) from the metal disk to
// the gzip file, and to its plain data (what the routes' expanded stream holds) plus reflate's
// reconstruction data. Sizes are zstd-compressed, as the image's layers are.
//
//	go run ./tests/bench/initrdgzip -metal metal.raw -initrd initrd.img
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/reflate"
)

func main() {
	metalPath := flag.String("metal", "", "the metal disk image (raw)")
	initrdPath := flag.String("initrd", "", "the live initrd.img (an xz cpio first)")
	flag.Parse()
	if *metalPath == "" || *initrdPath == "" {
		log.Fatal("usage: initrdgzip -metal metal.raw -initrd initrd.img")
	}
	metal, err := os.Open(*metalPath)
	check(err)
	mst, err := metal.Stat()
	check(err)
	cpio, err := exec.Command("xz", "-dc", "--single-stream", *initrdPath).Output()
	check(err)
	cmd := exec.Command("gzip", "-9", "-n", "-c")
	cmd.Stdin = bytes.NewReader(cpio)
	gz, err := cmd.Output()
	check(err)
	fmt.Printf("initramfs cpio %d bytes, gzip -9 %d bytes\n", len(cpio), len(gz))

	t0 := time.Now()
	var plain bytes.Buffer
	recon, _, err := reflate.SplitGzip(bytes.NewReader(gz), &plain)
	check(err)
	split := time.Since(t0)
	t0 = time.Now()
	var again bytes.Buffer
	check(reflate.RebuildGzip(&again, bytes.NewReader(plain.Bytes()), recon))
	rebuild := time.Since(t0)
	if !bytes.Equal(again.Bytes(), gz) {
		log.Fatal("reflate rebuilt other bytes")
	}
	t0 = time.Now()
	cmd = exec.Command("gzip", "-9", "-n", "-c")
	cmd.Stdin = bytes.NewReader(cpio)
	check(cmd.Run())
	gzipTime := time.Since(t0)

	cost := func(target []byte) (int64, int64) {
		var d bytes.Buffer
		_, err := delta.Compute(metal, mst.Size(), bytes.NewReader(target), int64(len(target)), &d, delta.Options{AnyOrder: true})
		check(err)
		return int64(d.Len()), zstdSize(d.Bytes())
	}
	dc, zc := cost(gz)
	dp, zp := cost(plain.Bytes())
	zr := zstdSize(recon)
	fmt.Printf("| | delta | in the image (zstd) | share of the gzip file |\n|---|---:|---:|---:|\n")
	fmt.Printf("| compressed (today) | %d B | %d B | %.1f%% |\n", dc, zc, 100*float64(zc)/float64(len(gz)))
	fmt.Printf("| expanded: delta of the cpio + reflate data (%d B) | %d B | %d B | %.1f%% |\n", len(recon), dp, zp+zr, 100*float64(zp+zr)/float64(len(gz)))
	fmt.Printf("reflate split %.2f s, rebuild %.2f s, gzip -9 %.2f s (rebuild/gzip %.2fx)\n",
		split.Seconds(), rebuild.Seconds(), gzipTime.Seconds(), rebuild.Seconds()/gzipTime.Seconds())
}

func zstdSize(b []byte) int64 {
	var n countWriter
	zw, err := zstd.NewWriter(&n, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	check(err)
	_, err = io.Copy(zw, bytes.NewReader(b))
	check(err)
	check(zw.Close())
	return int64(n)
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

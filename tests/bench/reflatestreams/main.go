// Command reflatestreams measures package reflate on the deflate streams inside images made by
// qemu-img: the grains of a streamOptimized VMDK (each a zlib stream) or the compressed clusters
// of a qcow2 (raw deflate). For each file it splits every stream, checks that Rebuild gives it
// back, and prints the reconstruction data as a share of the compressed bytes.
//
//	go run ./tests/bench/reflatestreams [-every N] FILE...
//
// -every N measures every Nth stream only (a sample of a large image).
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/reflate"
	"github.com/rehydrator/rehydrator/vmdk"
)

var every = flag.Int("every", 1, "measure every Nth stream")

func main() {
	flag.Parse()
	if flag.NArg() < 1 || *every < 1 {
		fmt.Fprintln(os.Stderr, "usage: reflatestreams [-every N] FILE...")
		os.Exit(2)
	}
	for _, f := range flag.Args() {
		if err := measure(f); err != nil {
			fmt.Fprintln(os.Stderr, "reflatestreams:", err)
			os.Exit(1)
		}
	}
}

func measure(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	streams, err := deflateStreams(f, st.Size())
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	comp, recon, levels := 0, 0, map[string]int{}
	var splitT, rebuildT time.Duration
	measured := 0
	for i, s := range streams {
		if i%*every != 0 {
			continue
		}
		measured++
		t0 := time.Now()
		plain, r, n, err := reflate.Split(s)
		if err != nil {
			return fmt.Errorf("%s: stream %d: %w", name, i, err)
		}
		t1 := time.Now()
		out, err := reflate.Rebuild(plain, r)
		splitT += t1.Sub(t0)
		rebuildT += time.Since(t1)
		if err != nil || !bytes.Equal(out, s[:n]) {
			return fmt.Errorf("%s: stream %d does not rebuild: %v", name, i, err)
		}
		comp += n
		recon += len(r)
		levels[methodLevel(r)]++
	}
	fmt.Printf("%s: %d of %d streams, %d compressed bytes, %d reconstruction bytes: %.3f%% (method/level: %v); split %v, rebuild %v (one core)\n",
		name, measured, len(streams), comp, recon, 100*float64(recon)/float64(max(comp, 1)), levels,
		splitT.Round(time.Millisecond), rebuildT.Round(time.Millisecond))
	return nil
}

// methodLevel reads the method and its parameters from reconstruction data (reflate/doc.go,
// version 2): after "RFL" and the version, the method, then method 0's level+2, method 1's
// level, windowBits and memLevel, method 2's level byte.
func methodLevel(r []byte) string {
	if len(r) < 6 {
		return "?"
	}
	switch r[4] {
	case 0:
		return fmt.Sprintf("go/%d", int(r[5])-2)
	case 1:
		if len(r) < 8 {
			return "?"
		}
		return fmt.Sprintf("zlib/%d/w%d/m%d", r[5], r[6], r[7])
	case 2:
		s := fmt.Sprintf("zlibng/%d/w%d", r[5]&15, r[5]>>4&7+8)
		if r[5]&0x80 != 0 {
			s += "/cap"
		}
		return s
	}
	return fmt.Sprintf("method %d", r[4])
}

// deflateStreams returns the raw deflate streams of a streamOptimized VMDK's grains (zlib
// header stripped) or of a qcow2's compressed clusters.
func deflateStreams(f io.ReaderAt, size int64) ([][]byte, error) {
	if qcow2.Sniff(f, size) {
		img, err := qcow2.Open(f, size)
		if err != nil {
			return nil, err
		}
		cs, err := img.CompressedClusters()
		if err != nil {
			return nil, err
		}
		var out [][]byte
		for _, c := range cs {
			b, err := io.ReadAll(img.CompressedStream(c))
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
		return out, nil
	}
	img, err := vmdk.Open(f, size)
	if err != nil {
		return nil, err
	}
	p, err := img.Params()
	if err != nil {
		return nil, err
	}
	off := int64(p.Header.Overhead) * vmdk.SectorSize
	var out [][]byte
	err = p.Grains.All(func(g vmdk.Grain) error {
		b := make([]byte, 12+int(g.Size))
		if _, err := f.ReadAt(b, off); err != nil {
			return fmt.Errorf("grain at %#x: %w", off, err)
		}
		if binary.LittleEndian.Uint32(b[8:]) != g.Size || len(b) < 14 {
			return fmt.Errorf("grain at %#x: marker size %d, grain map %d", off, binary.LittleEndian.Uint32(b[8:]), g.Size)
		}
		out = append(out, b[14:]) // marker, then the zlib header (2 bytes)
		off += (12 + int64(g.Size) + vmdk.SectorSize - 1) / vmdk.SectorSize * vmdk.SectorSize
		return nil
	})
	return out, err
}

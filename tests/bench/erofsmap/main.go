// Command erofsmap measures file-aware matching on an EROFS image: the any-order delta of the
// image with its reproducible LZMA clusters expanded (erofsprecomp, as the ISO route does)
// against a filesystem image of the same tree (XFS or ext4) directly, and against the
// synthetic base that filemap lays out of it with the EROFS lister (fslist.EROFS). Sizes are
// the delta's bytes and its zstd-compressed size (what a layer costs), the map counted in.
//
//	go run ./tests/bench/erofsmap -base root.ext4 -erofs root.erofs
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"runtime"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/erofsprecomp"
	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/filemap/fslist"
)

func main() {
	basePath := flag.String("base", "", "a filesystem image (XFS or ext4) of the tree")
	erofsPath := flag.String("erofs", "", "an EROFS image of the same tree")
	flag.Parse()
	if *basePath == "" || *erofsPath == "" {
		log.Fatal("usage: erofsmap -base root.ext4 -erofs root.erofs")
	}
	base, err := os.Open(*basePath)
	check(err)
	bst, err := base.Stat()
	check(err)
	img, err := os.ReadFile(*erofsPath)
	check(err)
	size := int64(len(img))

	start := time.Now()
	plan, err := erofsprecomp.Scan(bytes.NewReader(img), size, runtime.NumCPU())
	check(err)
	var x bytes.Buffer
	check(erofsprecomp.Expand(&x, bytes.NewReader(img), size, plan))
	target := x.Bytes()
	fmt.Printf("EROFS %d bytes: %d of %d LZMA clusters reproduce (%d bytes), expanded to %d bytes in %v\n",
		size, len(plan.Clusters), plan.Seen, plan.Covered(), len(target), time.Since(start).Round(time.Millisecond))

	start = time.Now()
	bfiles, err := fslist.Root(base, 0, bst.Size())
	check(err)
	tfiles, err := fslist.EROFS(bytes.NewReader(img), 0, size, plan, 0)
	check(err)
	m, err := filemap.Build(bfiles, tfiles, int64(len(target)), filemap.Options{Tail: bst.Size(), Base: base, Target: bytes.NewReader(target)})
	check(err)
	enc, err := m.MarshalBinary()
	check(err)
	st := m.Stats
	var small, smallBytes int64
	for _, f := range tfiles {
		if f.Size > 0 && f.Size < 4096 {
			small++
			smallBytes += f.Size
		}
	}
	fmt.Printf("map: %d EROFS files (%d under 4 KiB, %d bytes), %d disk files, %d paired by path, %d by content; %d of %d file bytes mapped in %d runs; %d bytes encoded; %v\n",
		st.TargetFiles, small, smallBytes, st.BaseFiles, st.ByPath, st.ByContent, st.MappedBytes, st.TargetBytes, len(m.Runs), len(enc), time.Since(start).Round(time.Millisecond))

	syn := filemap.NewReader(base, m)
	fmt.Println("| delta from | literal bytes | delta bytes | zstd'd (layer) | of the EROFS | time |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: |")
	for _, b := range []struct {
		name  string
		r     io.ReaderAt
		size  int64
		extra []byte
	}{{"the disk", base, bst.Size(), nil}, {"the file-mapped disk (map counted)", syn, syn.Size(), enc}} {
		start := time.Now()
		var d bytes.Buffer
		ds, err := delta.Compute(b.r, b.size, bytes.NewReader(target), int64(len(target)), &d, delta.Options{AnyOrder: true})
		check(err)
		var back bytes.Buffer
		check(delta.PatchAt(b.r, b.size, bytes.NewReader(d.Bytes()), &back))
		if !bytes.Equal(back.Bytes(), target) {
			log.Fatalf("%s: the patched output differs", b.name)
		}
		packed := zstdSize(d.Bytes()) + zstdSize(b.extra)
		fmt.Printf("| %s | %d | %d | %d | %.1f%% | %v |\n", b.name, ds.LiteralBytes, ds.DeltaSize+int64(len(b.extra)), packed,
			100*float64(packed)/float64(size), time.Since(start).Round(time.Millisecond))
	}
}

func zstdSize(b []byte) int64 {
	if len(b) == 0 {
		return 0
	}
	zw, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	check(err)
	defer zw.Close()
	return int64(len(zw.EncodeAll(b, nil)))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// Command filemapiso measures file-aware matching on a release's live ISO: the any-order delta
// of the ISO with its zstd frames expanded (precomp, as the ISO route does) against the metal
// disk directly, and against the synthetic base that filemap lays out of the disk's root and
// boot filesystems (ext4 or XFS) for the squashfs inside the ISO.
//
//	go run ./tests/bench/filemapiso -metal metal.raw -iso live.iso
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"time"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/filemap/fslist"
	"github.com/rehydrator/rehydrator/precomp"
	"github.com/rehydrator/rehydrator/squashfs"
)

func main() {
	metalPath := flag.String("metal", "", "the metal disk image (raw)")
	isoPath := flag.String("iso", "", "the live ISO")
	flag.Parse()
	if *metalPath == "" || *isoPath == "" {
		log.Fatal("usage: filemapiso -metal metal.raw -iso live.iso")
	}
	metal, err := os.Open(*metalPath)
	check(err)
	mst, err := metal.Stat()
	check(err)
	iso, err := os.ReadFile(*isoPath)
	check(err)

	// The base's files: the partitions labelled root and boot (mounted at boot in the squashfs).
	out, err := exec.Command("sfdisk", "-J", *metalPath).Output()
	check(err)
	var pt struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start, Size int64
				Name        string
			}
		}
	}
	check(json.Unmarshal(out, &pt))
	var base []filemap.File
	for _, p := range pt.PartitionTable.Partitions {
		ss := pt.PartitionTable.SectorSize
		if p.Name != "root" && p.Name != "boot" {
			continue
		}
		files, err := fslist.Root(metal, p.Start*ss, p.Size*ss)
		check(err)
		if p.Name == "boot" {
			files = fslist.Mounted(files, "boot")
		}
		fmt.Printf("%s: %d files\n", p.Name, len(files))
		base = append(base, files...)
	}

	// The squashfs inside the ISO (in rootfs.img's cpio, 4-byte aligned).
	sqOff := int64(-1)
	var sqSize int64
	for i := 0; i+96 < len(iso); i += 4 {
		if string(iso[i:i+4]) != "hsqs" {
			continue
		}
		rd, err := squashfs.Open(bytes.NewReader(iso[i:]), int64(len(iso)-i))
		if err == nil {
			sqOff, sqSize = int64(i), rd.Super.BytesUsed
			rd.Close()
			break
		}
	}
	if sqOff < 0 {
		log.Fatal("no squashfs in the ISO")
	}
	start := time.Now()
	plan, err := precomp.Scan(bytes.NewReader(iso), int64(len(iso)))
	check(err)
	var expanded bytes.Buffer
	check(precomp.Expand(&expanded, bytes.NewReader(iso), int64(len(iso)), plan))
	target := expanded.Bytes()
	fmt.Printf("ISO %d bytes, squashfs %d bytes at %d; %d frames expanded (%d bytes of the ISO) to %d bytes in %v\n",
		len(iso), sqSize, sqOff, len(plan.Frames), plan.Covered(), len(target), time.Since(start).Round(time.Millisecond))

	start = time.Now()
	exp, err := fslist.Expansion(plan, int64(len(iso)))
	check(err)
	tfiles, err := fslist.Squashfs(bytes.NewReader(iso), sqOff, sqSize, exp)
	check(err)
	m, err := filemap.Build(base, tfiles, int64(len(target)), filemap.Options{Tail: mst.Size(), Base: metal, Target: bytes.NewReader(target)})
	check(err)
	enc, err := m.MarshalBinary()
	check(err)
	st := m.Stats
	fmt.Printf("map: %d squashfs files, %d disk files, %d paired by path, %d by content; %d of %d file bytes mapped in %d runs; %d bytes encoded; %v\n",
		st.TargetFiles, st.BaseFiles, st.ByPath, st.ByContent, st.MappedBytes, st.TargetBytes, len(m.Runs), len(enc), time.Since(start).Round(time.Millisecond))

	syn := filemap.NewReader(metal, m)
	for _, b := range []struct {
		name  string
		r     io.ReaderAt
		size  int64
		extra int64
	}{{"metal disk", metal, mst.Size(), 0}, {"synthetic base (map + metal disk)", syn, syn.Size(), int64(len(enc))}} {
		start := time.Now()
		var d bytes.Buffer
		ds, err := delta.Compute(b.r, b.size, bytes.NewReader(target), int64(len(target)), &d, delta.Options{AnyOrder: true})
		check(err)
		var back bytes.Buffer
		check(delta.PatchAt(b.r, b.size, bytes.NewReader(d.Bytes()), &back))
		if !bytes.Equal(back.Bytes(), target) {
			log.Fatalf("%s: the patched output differs", b.name)
		}
		fmt.Printf("| %s | %d | %d | %.1f%% | %v |\n", b.name, ds.LiteralBytes, ds.DeltaSize+b.extra, 100*float64(ds.DeltaSize+b.extra)/float64(len(iso)), time.Since(start).Round(time.Millisecond))
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

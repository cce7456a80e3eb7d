package dehydrate

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/erofs"
	"github.com/rehydrator/rehydrator/erofsprecomp"
	"github.com/rehydrator/rehydrator/iso"
	"github.com/rehydrator/rehydrator/lzmarepro"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// The EROFS route: a file holding EROFS images with LZMA clusters, such as the live ISO since
// Fedora 42 (rootfs.img, a cpio of root.erofs and the osmet files). Each image's clusters that
// this build's liblzma reproduces are expanded to their plain data (erofsprecomp), the rest of
// the file stays as it is, the delta from the baseline's guest view to that expanded stream is
// computed in any order (the EROFS lays the files out anew), and erofs-restore compresses the
// clusters again when rehydrating.
//
// The osmet files (xz -9) stay compressed: liblzma's preset 9 encoder touches about 9 bytes per
// input byte plus its hash table (681 MiB for the small fixture's osmet stream), far above the
// rehydrator's memory target (BENCHMARKS.md, "The osmet files' xz -9 streams").

// erofsMinCover is the share of a file its reproducible EROFS clusters must hold before the
// route computes a delta: below it the expansion cannot make the delta much smaller.
const erofsMinCover = 4 // 1/4

// erofsISO: the live ISO (or any file the planner reaches with it) whose bulk is EROFS clusters
// this build reproduces.
func erofsISO(ctx context.Context, j *job, _ *candidate) (*candidate, error) {
	if !j.hasBase() || !j.a.IsISO() {
		return nil, nil
	}
	start := time.Now()
	c, err := erofsCandidate(ctx, j.files[j.base], j.file, j.blobDir, j.opt.Jobs, j.opt.Delta, j.say)
	if c != nil {
		j.say("%s: EROFS expanded and delta'd in %.1fs", j.art.Name, time.Since(start).Seconds())
	}
	return c, err
}

// erofsImage is one EROFS image inside the file and its plan.
type erofsImage struct {
	offset, size int64
	plan         *erofsprecomp.Plan
}

// erofsCandidate scans targetPath for EROFS images, expands their reproducible clusters and
// returns the candidate qcow2-decode -> patch -> erofs-restore; nil when the file holds no such
// image or too few clusters reproduce.
func erofsCandidate(ctx context.Context, basePath, targetPath, blobDir string, jobs int, opt delta.Options, say func(string, ...any)) (*candidate, error) {
	target, tsize, err := openSized(targetPath)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	spans, err := findEROFS(target, tsize)
	if err != nil || len(spans) == 0 {
		return nil, err
	}
	if lzmarepro.Version() == "" {
		say("%s: built without cgo, so its EROFS clusters cannot be reproduced: stored another way", targetPath)
		return nil, nil
	}
	var images []erofsImage
	var covered int64
	for _, s := range spans {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		plan, err := erofsprecomp.Scan(io.NewSectionReader(target, s.Offset, s.Size), s.Size, max(jobs, 1))
		if err != nil {
			// Damaged or of a layout erofsprecomp does not know: the image stays as it is.
			say("%s: EROFS image at %d left as it is: %v", targetPath, s.Offset, err)
			continue
		}
		say("%s: EROFS image at %d (%d bytes): %d of %d LZMA clusters reproduce (%d bytes; liblzma %s; %.1fs)", targetPath,
			s.Offset, s.Size, len(plan.Clusters), plan.Seen, plan.Covered(), lzmarepro.Version(), time.Since(t0).Seconds())
		if len(plan.Clusters) == 0 {
			continue
		}
		images = append(images, erofsImage{offset: s.Offset, size: s.Size, plan: plan})
		covered += plan.Covered()
	}
	if covered*erofsMinCover < tsize {
		return nil, nil
	}

	x, err := os.CreateTemp(blobDir, ".erofs-expanded-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(x.Name())
	defer x.Close()
	bw := bufio.NewWriterSize(x, 1<<20)
	gz, err := initrdAfterEROFS(ctx, target, tsize, images, blobDir, prefixed(say, targetPath))
	if err != nil {
		return nil, err
	}
	defer gz.close()
	var params *erofsStepParams
	xsize, err := gz.expand(bw, func(w io.Writer) (n int64, err error) {
		params, n, err = expandEROFS(w, target, tsize, images)
		return n, err
	})
	if err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	pj, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}

	base, err := openBaseline(basePath)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	opt.AnyOrder = true
	start := time.Now()
	patch, blobs, err := erofsDelta(base.guest, target, images, gz, x, xsize, blobDir, opt, say, targetPath)
	if err != nil {
		return nil, err
	}
	steps := append([]rehydrate.Step{{Op: rehydrate.OpQcow2Decode}}, patch...)
	if gz != nil {
		st, gb, err := gz.step(blobDir)
		if err != nil {
			for _, b := range blobs {
				os.Remove(b.path)
			}
			return nil, err
		}
		steps, blobs = append(steps, st), append(blobs, gb)
	}
	steps = append(steps, rehydrate.Step{Op: rehydrate.OpEROFS, Params: pj})
	return &candidate{steps: steps, onBaseline: true, blobs: blobs, took: time.Since(start)}, nil
}

// erofsStepParams are erofs-restore's parameters (rehydrate/op_erofs.go).
type erofsStepParams struct {
	Images []erofsStepImage `json:"images"`
}

type erofsStepImage struct {
	Offset   int64 `json:"offset"`
	Size     int64 `json:"size"`
	Expanded int64 `json:"expanded"`
}

// expandEROFS writes the expanded stream of r (size bytes): its bytes, each image replaced by
// erofsprecomp's expanded stream. It returns erofs-restore's parameters and the stream's size.
func expandEROFS(w io.Writer, r io.ReaderAt, size int64, images []erofsImage) (*erofsStepParams, int64, error) {
	p := &erofsStepParams{}
	var pos, n int64
	for _, im := range images {
		if _, err := io.Copy(w, io.NewSectionReader(r, pos, im.offset-pos)); err != nil {
			return nil, 0, err
		}
		xs := im.plan.ExpandedSize(im.size)
		if err := erofsprecomp.Expand(w, io.NewSectionReader(r, im.offset, im.size), im.size, im.plan); err != nil {
			return nil, 0, fmt.Errorf("expand the EROFS image at %d: %w", im.offset, err)
		}
		n += im.offset - pos + xs
		p.Images = append(p.Images, erofsStepImage{Offset: im.offset, Size: im.size, Expanded: xs})
		pos = im.offset + im.size
	}
	if _, err := io.Copy(w, io.NewSectionReader(r, pos, size-pos)); err != nil {
		return nil, 0, err
	}
	return p, n + size - pos, nil
}

// findEROFS lists the EROFS images in a file, in file order and not overlapping: the file
// itself, the members of a newc cpio (the PXE rootfs), or those of the cpio files of an ISO
// 9660 image (the live ISO's rootfs.img).
func findEROFS(r io.ReaderAt, size int64) ([]iso.Extent, error) {
	if isEROFS(r, 0, size) {
		return []iso.Extent{{Offset: 0, Size: size}}, nil
	}
	if out := cpioEROFS(r, 0, size); len(out) > 0 {
		return out, nil
	}
	img, err := iso.Open(r, size)
	if err != nil {
		return nil, nil // not an ISO we can read: no images
	}
	files, err := img.Files()
	if err != nil {
		return nil, nil
	}
	var out []iso.Extent
	for _, f := range files {
		if f.IsDir || !f.Contiguous() || f.Size < 4096 {
			continue
		}
		if isEROFS(r, f.Offset, f.Size) {
			out = append(out, iso.Extent{Offset: f.Offset, Size: f.Size})
			continue
		}
		out = append(out, cpioEROFS(r, f.Offset, f.Size)...)
	}
	// Files() is in tree order; the op wants file order, and hard links share extents.
	sortExtents(&out)
	return out, nil
}

func sortExtents(out *[]iso.Extent) {
	e := *out
	slices.SortFunc(e, func(a, b iso.Extent) int { return cmp.Compare(a.Offset, b.Offset) })
	keep := e[:0]
	var end int64
	for _, x := range e {
		if x.Offset >= end {
			keep = append(keep, x)
			end = x.Offset + x.Size
		}
	}
	*out = keep
}

// isEROFS says whether the size bytes at off start with an EROFS superblock.
func isEROFS(r io.ReaderAt, off, size int64) bool {
	if size < 2048 {
		return false
	}
	var b [4]byte
	if _, err := r.ReadAt(b[:], off+1024); err != nil {
		return false
	}
	return binary.LittleEndian.Uint32(b[:]) == erofs.Magic
}

// cpioNewc is the magic of a newc cpio header (no CRC; "070702" has one and the same layout).
var cpioNewc = [][]byte{[]byte("070701"), []byte("070702")}

// cpioEROFS walks the newc cpio archive of size bytes at off and lists its members that are
// EROFS images; nothing when it is not such an archive. A damaged archive ends the walk.
func cpioEROFS(r io.ReaderAt, off, size int64) []iso.Extent {
	var out []iso.Extent
	var hdr [110]byte
	for pos := int64(0); pos+110 <= size; {
		if _, err := r.ReadAt(hdr[:], off+pos); err != nil {
			return out
		}
		if !bytes.Equal(hdr[:6], cpioNewc[0]) && !bytes.Equal(hdr[:6], cpioNewc[1]) {
			return out
		}
		field := func(i int) (int64, bool) {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			return int64(v), err == nil
		}
		nameSize, ok1 := field(11)
		fileSize, ok2 := field(6)
		if !ok1 || !ok2 || nameSize == 0 {
			return out
		}
		data := align4(pos + 110 + nameSize)
		if data+fileSize > size {
			return out
		}
		name := make([]byte, nameSize-1)
		if _, err := r.ReadAt(name, off+pos+110); err != nil {
			return out
		}
		if string(name) == "TRAILER!!!" {
			return out
		}
		if isEROFS(r, off+data, fileSize) {
			out = append(out, iso.Extent{Offset: off + data, Size: fileSize})
		}
		pos = align4(data + fileSize)
	}
	return out
}

func align4(n int64) int64 { return (n + 3) &^ 3 }

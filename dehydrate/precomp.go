package dehydrate

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/filemap/fslist"
	"github.com/rehydrator/rehydrator/precomp"
	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/squashfs"
)

// precompMinCover is the share of a file its reproducible zstd frames must hold before the
// expanded route is tried: below it the frames cannot make the delta much smaller.
const precompMinCover = 4 // 1/4

// precompCandidate tries the route for files whose bulk is zstd frames this build reproduces,
// such as the live ISO's squashfs of the same root tree as the baseline disk: expand the frames
// (precomp), compute a delta from the baseline's guest view to the expanded file — in any
// order, since the squashfs lays the files out anew — and compress them again when rehydrating
// (zstd-restore). When the file holds a squashfs whose files the baseline's root and boot
// filesystems hold too, the delta is taken against a synthetic base (filemap) that lays those
// files out where the expanded ISO has them, which rehydration rebuilds from the map blob
// (filemap step): always at least as good, since the whole baseline follows it (on the small
// fcos-41 fixture's ISO, 26.8% of the ISO becomes 5.9%; BENCHMARKS.md). It returns nil when
// the file holds too few such frames.
func precompCandidate(ctx context.Context, basePath, targetPath, blobDir string, opt delta.Options, say func(string, ...any)) (*candidate, error) {
	target, tsize, err := openSized(targetPath)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	plan, err := precomp.Scan(target, tsize)
	if err != nil {
		return nil, err
	}
	if plan.Covered()*precompMinCover < tsize {
		if precomp.Version() == "" {
			say("%s: built without cgo, so its zstd frames cannot be reproduced: stored as it is", targetPath)
		}
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	say("%s: %d zstd frames (level %d, libzstd %s) hold %d of %d bytes: expanding them", targetPath,
		len(plan.Frames), plan.Level, precomp.Version(), plan.Covered(), tsize)
	x, err := os.CreateTemp(blobDir, ".expanded-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(x.Name())
	defer x.Close()
	bw := bufio.NewWriterSize(x, 1<<20)
	gz, err := initrdAfterPrecomp(ctx, target, tsize, plan, blobDir, prefixed(say, targetPath))
	if err != nil {
		return nil, err
	}
	defer gz.close()
	xsize, err := gz.expand(bw, func(w io.Writer) (int64, error) {
		if err := precomp.Expand(w, target, tsize, plan); err != nil {
			return 0, fmt.Errorf("expand: %w", err)
		}
		return plan.ExpandedSize(tsize), nil
	})
	if err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}

	base, err := openBaseline(basePath)
	if err != nil {
		return nil, err
	}
	defer base.Close()
	opt.AnyOrder = true
	start := time.Now()
	steps := []rehydrate.Step{{Op: rehydrate.OpQcow2Decode}}
	var blobs []*blob
	var from io.ReaderAt = base.guest
	fromSize := base.guest.Size()
	m, err := fileMap(base.guest, target, tsize, plan, gz, x, xsize)
	switch {
	case err != nil:
		say("%s: files not matched (%v): delta against the disk as it is", targetPath, err)
	case m != nil:
		sayMap(say, targetPath, m)
		syn, synSize, step, mb, err := mapSteps(blobDir, base.guest, m)
		if err != nil {
			return nil, err
		}
		from, fromSize = syn, synSize
		steps = append(steps, step)
		blobs = append(blobs, mb)
	}
	d, err := writeDelta(from, fromSize, x, xsize, blobDir, opt)
	if err != nil {
		return nil, err
	}
	steps = append(steps, rehydrate.Step{Op: rehydrate.OpPatch, Blob: d.digest})
	blobs = append(blobs, d)
	if gz != nil {
		st, gb, err := gz.step(blobDir)
		if err != nil {
			os.Remove(d.path)
			return nil, err
		}
		steps, blobs = append(steps, st), append(blobs, gb)
	}
	steps = append(steps, rehydrate.Step{Op: rehydrate.OpZstdRestore})
	return &candidate{steps: steps, onBaseline: true, blobs: blobs, took: time.Since(start)}, nil
}

// fileMap pairs the files of the squashfs inside the live ISO (target, expanded by plan and
// gz, which may be nil, into x) with those of the baseline disk's root and boot filesystems, and returns the map of a
// synthetic base that holds each paired file's disk bytes where the expanded ISO has them, then
// the whole disk (so the kernel and initramfs are still found). The delta against it copies
// every file, however small, in one piece (docs/DESIGN-NOTES.md, "Why the block-indexed delta
// misses files"). It returns nil when there is nothing to pair: no squashfs, no root
// filesystem the listers read, or no file in common.
func fileMap(guest *qcow2.Image, target io.ReaderAt, tsize int64, plan *precomp.Plan, gz *initrdExpansion, x io.ReaderAt, xsize int64) (*filemap.Map, error) {
	sqOff, sqSize, err := findSquashfs(target, tsize)
	if err != nil || sqSize == 0 {
		return nil, err
	}
	base, err := baselineFiles(guest)
	if err != nil || len(base) == 0 {
		return nil, err
	}
	exp, err := precompExpansion(plan, tsize, gz)
	if err != nil {
		return nil, err
	}
	live, err := fslist.Squashfs(target, sqOff, sqSize, exp)
	if err != nil {
		return nil, fmt.Errorf("live squashfs at %d: %w", sqOff, err)
	}
	return buildFileMap(guest, base, live, x, xsize)
}

// writeMap stores an encoded map as a blob (a part of the delta: it goes when the candidate
// loses).
func writeMap(blobDir string, m *filemap.Map) (*blob, error) {
	enc, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b, err := dataBlob(blobDir, enc)
	if err != nil {
		return nil, fmt.Errorf("file map: %w", err)
	}
	return b, nil
}

// findSquashfs finds the first squashfs (its "hsqs" magic 4-byte aligned, as in rootfs.img's
// newc cpio) that opens, and returns its offset and size; size 0 when there is none.
func findSquashfs(r io.ReaderAt, size int64) (int64, int64, error) {
	const chunk = 4 << 20
	buf := make([]byte, chunk+4)
	for off := int64(0); off < size; off += chunk {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && err != io.EOF {
			return 0, 0, err
		}
		for i := 0; i+4 <= n && i < chunk; i += 4 {
			if string(buf[i:i+4]) != "hsqs" {
				continue
			}
			at := off + int64(i)
			rd, err := squashfs.Open(io.NewSectionReader(r, at, size-at), size-at)
			if err != nil {
				continue // a chance "hsqs", or a squashfs we do not read
			}
			used := rd.Super.BytesUsed
			rd.Close()
			return at, used, nil
		}
	}
	return 0, 0, nil
}

// part is a GPT partition of the baseline disk, in bytes.
type part struct {
	name      string
	off, size int64
}

// gptParts reads the baseline's GPT (512- or 4096-byte sectors); none when it has no GPT.
func gptParts(r io.ReaderAt, size int64) ([]part, error) {
	le := binary.LittleEndian
	for _, sector := range []int64{512, 4096} {
		h := make([]byte, 92)
		if size < 2*sector {
			continue
		}
		if _, err := r.ReadAt(h, sector); err != nil || string(h[:8]) != "EFI PART" {
			continue
		}
		lba, count, esize := int64(le.Uint64(h[72:])), int64(le.Uint32(h[80:])), int64(le.Uint32(h[84:]))
		if esize < 128 || esize > 4096 || count > 1024 || lba < 0 || lba > size/sector || lba*sector+count*esize > size {
			return nil, fmt.Errorf("baseline GPT: %d entries of %d bytes at LBA %d do not fit the disk", count, esize, lba)
		}
		tab := make([]byte, count*esize)
		if _, err := r.ReadAt(tab, lba*sector); err != nil {
			return nil, fmt.Errorf("baseline GPT entries: %w", err)
		}
		var out []part
		for i := int64(0); i < count; i++ {
			e := tab[i*esize:]
			first, last := int64(le.Uint64(e[32:])), int64(le.Uint64(e[40:]))
			if first <= 0 || last < first || last >= size/sector {
				continue // unused, or not inside the disk
			}
			u := make([]uint16, 36)
			for j := range u {
				u[j] = le.Uint16(e[56+2*j:])
			}
			name, _, _ := strings.Cut(string(utf16.Decode(u)), "\x00")
			out = append(out, part{name: name, off: first * sector, size: (last - first + 1) * sector})
		}
		return out, nil
	}
	return nil, nil
}

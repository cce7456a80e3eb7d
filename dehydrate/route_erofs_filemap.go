package dehydrate

import (
	"fmt"
	"io"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/filemap/fslist"
	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// The EROFS route's file map, as the zstd route has one for its squashfs: mkfs.erofs
// -Efragments packs small files and tails into the packed inode's clusters, while the XFS disk
// holds each small file alone in its blocks, so block deltas cannot find them. The files of
// the expanded EROFS images are paired with the disk's, and the delta is taken against a
// synthetic base holding the disk's file data where the expanded ISO has it, when that makes
// the delta smaller.

// erofsDelta returns the steps from the baseline's guest view to x, the expanded stream of
// target (xsize bytes) in which images are expanded: patch, after a filemap step when the file
// map makes the delta smaller.
func erofsDelta(guest *qcow2.Image, target io.ReaderAt, images []erofsImage, gz *initrdExpansion, x io.ReaderAt, xsize int64, blobDir string, opt delta.Options, say func(string, ...any), name string) ([]rehydrate.Step, []*blob, error) {
	m, err := erofsFileMap(guest, target, images, gz, x, xsize)
	switch {
	case err != nil:
		say("%s: files not matched (%v): delta against the disk as it is", name, err)
		m = nil
	case m != nil:
		sayMap(say, name, m)
	}
	return smallerMappedDelta(guest, m, x, xsize, blobDir, opt, say, name)
}

// erofsFileMap pairs the files of the expanded EROFS images with those of the baseline disk's
// root and boot filesystems; nil when nothing pairs. gz (nil: none) is the initramfs streams
// expanded in x too, which move what follows them.
func erofsFileMap(guest *qcow2.Image, target io.ReaderAt, images []erofsImage, gz *initrdExpansion, x io.ReaderAt, xsize int64) (*filemap.Map, error) {
	base, err := baselineFiles(guest)
	if err != nil || len(base) == 0 || len(images) == 0 {
		return nil, err
	}
	var live []filemap.File
	var growth int64 // how much the images before grew in the expanded stream
	for _, im := range images {
		files, err := fslist.EROFS(target, im.offset, im.size, im.plan, im.offset+growth+gz.growthBefore(im.offset))
		if err != nil {
			return nil, fmt.Errorf("EROFS image at %d: %w", im.offset, err)
		}
		live = append(live, files...)
		growth += im.plan.ExpandedSize(im.size) - im.size
	}
	return buildFileMap(guest, base, live, x, xsize)
}

package dehydrate

import (
	"fmt"
	"io"
	"os"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/filemap/fslist"
	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// The file map shared by the routes whose target is an expanded live image (precomp's zstd
// squashfs, erofsprecomp's LZMA EROFS): the baseline's files laid out where the expanded
// target has them (docs/DESIGN-NOTES.md, "Why the block-indexed delta misses files").

// baselineFiles lists the regular files of the baseline disk's root and boot filesystems (the
// boot ones under boot/, where a live root tree has them); none when the disk has neither.
func baselineFiles(guest *qcow2.Image) ([]filemap.File, error) {
	parts, err := gptParts(guest, guest.Size())
	if err != nil {
		return nil, err
	}
	var base []filemap.File
	for _, p := range parts {
		if p.name != "root" && p.name != "boot" {
			continue
		}
		files, err := fslist.Root(guest, p.off, p.size)
		if err != nil {
			return nil, fmt.Errorf("baseline partition %q: %w", p.name, err)
		}
		if p.name == "boot" {
			files = fslist.Mounted(files, "boot") // where the live root tree has it
		}
		base = append(base, files...)
	}
	return base, nil
}

// buildFileMap pairs live (files of the expanded target x, xsize bytes) with base (the guest's)
// and returns the map of a synthetic base followed by the whole guest; nil when no byte pairs.
func buildFileMap(guest *qcow2.Image, base, live []filemap.File, x io.ReaderAt, xsize int64) (*filemap.Map, error) {
	m, err := filemap.Build(base, live, xsize, filemap.Options{Base: guest, Target: x, Tail: guest.Size()})
	if err != nil || m.Stats.MappedBytes == 0 {
		return nil, err
	}
	return m, nil
}

// sayMap reports how a map paired the files.
func sayMap(say func(string, ...any), name string, m *filemap.Map) {
	st := m.Stats
	say("%s: %d of %d live files paired with the disk's (%d by content): %d of %d file bytes laid out as the ISO has them",
		name, st.ByPath+st.ByContent, st.TargetFiles, st.ByContent, st.MappedBytes, st.TargetBytes)
}

// mapSteps stores the map and returns the synthetic base it makes of the guest, with the
// filemap step and blob that rebuild it.
func mapSteps(blobDir string, guest *qcow2.Image, m *filemap.Map) (io.ReaderAt, int64, rehydrate.Step, *blob, error) {
	mb, err := writeMap(blobDir, m)
	if err != nil {
		return nil, 0, rehydrate.Step{}, nil, err
	}
	syn := filemap.NewReader(guest, m)
	return syn, syn.Size(), rehydrate.Step{Op: rehydrate.OpFilemap, Blob: mb.digest}, mb, nil
}

// smallerMappedDelta computes the delta to x (xsize bytes) from the guest as it is and, when m
// is not nil, from the synthetic base m makes of it, and keeps the smaller in a layer (the map
// blob counted with its delta). It returns the steps from the guest view to x (filemap when it
// wins, then patch) and their blobs; the loser's blobs are removed.
func smallerMappedDelta(guest *qcow2.Image, m *filemap.Map, x io.ReaderAt, xsize int64, blobDir string, opt delta.Options, say func(string, ...any), name string) ([]rehydrate.Step, []*blob, error) {
	plain, err := writeDelta(guest, guest.Size(), x, xsize, blobDir, opt)
	if err != nil {
		return nil, nil, err
	}
	plainSteps := []rehydrate.Step{{Op: rehydrate.OpPatch, Blob: plain.digest}}
	if m == nil {
		return plainSteps, []*blob{plain}, nil
	}
	syn, synSize, step, mb, err := mapSteps(blobDir, guest, m)
	if err != nil {
		return nil, nil, err
	}
	d, err := writeDelta(syn, synSize, x, xsize, blobDir, opt)
	if err != nil {
		os.Remove(mb.path)
		return nil, nil, err
	}
	mapped := mb.packed + d.packed
	say("%s: delta from the disk %d bytes (layer), from the file-mapped disk %d (map %d + delta %d)",
		name, plain.packed, mapped, mb.packed, d.packed)
	if mapped < plain.packed {
		if plain.path != d.path {
			os.Remove(plain.path)
		}
		return []rehydrate.Step{step, {Op: rehydrate.OpPatch, Blob: d.digest}}, []*blob{mb, d}, nil
	}
	if d.path != plain.path {
		os.Remove(d.path)
	}
	os.Remove(mb.path)
	return plainSteps, []*blob{plain}, nil
}

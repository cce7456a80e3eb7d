package dehydrate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/rehydrator/rehydrator/reflate"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/vmdk"
)

// vmdkGrains turns a format's vmdk-encode step into vmdk-grains when C zlib does not reproduce
// some of the shipped grains (qemu-img linked with zlib-ng): each such grain's zlib stream is
// split by reflate and its reconstruction data goes into one blob, so those grains cost their
// reconstruction data rather than a delta of their compressed bytes. target is the shipped
// VMDK or OVA. It returns steps unchanged (and no blob) when every grain is reproduced, or
// when there is no vmdk-encode step.
func vmdkGrains(steps []rehydrate.Step, target io.ReaderAt, tsize int64, blobDir string) ([]rehydrate.Step, *blob, string, error) {
	at := -1
	for i, s := range steps {
		if s.Op == rehydrate.OpVMDKEncode {
			at = i
		}
	}
	if at < 0 {
		return steps, nil, "", nil
	}
	raw, rsize := target, tsize
	if !vmdk.Sniff(target, tsize) {
		_, disk, err := vmdk.FindOVADisk(target, tsize)
		if err != nil {
			return nil, nil, "", fmt.Errorf("vmdk grains: %w", err)
		}
		raw, rsize = disk.Open(target), disk.Size
	}
	img, err := vmdk.Open(raw, rsize)
	if err != nil {
		return nil, nil, "", fmt.Errorf("vmdk grains: %w", err)
	}
	var p vmdk.Params
	if err := json.Unmarshal(steps[at].Params, &p); err != nil {
		return nil, nil, "", fmt.Errorf("vmdk grains: %w", err)
	}
	grains, total, err := splitVMDKGrains(raw, img, &p)
	if err != nil {
		return nil, nil, "", err
	}
	if len(grains) == 0 {
		return steps, nil, "", nil
	}
	recon := rehydrate.MarshalVMDKGrains(grains)
	b, err := dataBlob(blobDir, recon)
	if err != nil {
		return nil, nil, "", err
	}
	out := append([]rehydrate.Step(nil), steps...)
	out[at] = rehydrate.Step{Op: rehydrate.OpVMDKGrains, Blob: b.digest, Params: steps[at].Params}
	note := fmt.Sprintf("%d of %d vmdk grains not made by %s: rebuilt by reflate from %d bytes", len(grains), total, p.Deflate, b.size)
	return out, b, note, nil
}

// splitVMDKGrains re-encodes the image from its guest view as vmdk-encode does and, for each
// grain whose compressed stream differs from the shipped one, splits the shipped stream. It
// keeps only grains whose plain data is the guest's grain and whose stream fills the grain's
// recorded size exactly (anything else stays for the patch after the steps).
func splitVMDKGrains(raw io.ReaderAt, img *vmdk.Image, p *vmdk.Params) (map[uint64][]byte, int, error) {
	// Where each shipped grain's stream lies: after the metadata, slot after slot.
	type slot struct {
		off  int64
		size uint32
	}
	slots := map[uint64]slot{}
	sec := int64(p.Header.Overhead)
	err := p.Grains.All(func(g vmdk.Grain) error {
		slots[g.Index] = slot{sec*vmdk.SectorSize + 12, g.Size}
		sec += (int64(g.Size) + 12 + vmdk.SectorSize - 1) / vmdk.SectorSize
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("vmdk grains: %w", err)
	}
	var mu sync.Mutex
	out := map[uint64][]byte{}
	opt := vmdk.EncodeOptions{Compressed: func(g uint64, data, comp []byte) error {
		s, ok := slots[g]
		if !ok {
			return nil
		}
		shipped := make([]byte, s.size)
		if _, err := raw.ReadAt(shipped, s.off); err != nil {
			return fmt.Errorf("vmdk grain %d: %w", g, err)
		}
		if bytes.Equal(shipped, comp) {
			return nil
		}
		var plain bytes.Buffer
		rec, n, err := reflate.SplitZlib(bytes.NewReader(shipped), &plain)
		if err != nil || n != int64(len(shipped)) || !bytes.Equal(plain.Bytes(), data) {
			return nil // not a zlib stream of the guest's grain alone: the patch carries it
		}
		mu.Lock()
		out[g] = rec
		mu.Unlock()
		return nil
	}}
	err = vmdk.EncodeWith(io.Discard, io.NewSectionReader(img, 0, img.Size()), p, opt)
	if _, ok := err.(*vmdk.MismatchError); ok {
		err = nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("vmdk grains: %w", err)
	}
	return out, len(slots), nil
}

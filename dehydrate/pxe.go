package dehydrate

import (
	"errors"

	"github.com/rehydrator/rehydrator/iso"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/streammeta"
)

// planFromISO finds a PXE file (kernel, initramfs, rootfs) inside the same architecture's live
// ISO, byte for byte, and returns the steps that cut it out of the rehydrated ISO: the PXE set
// then costs nothing in the image. ok is false when the file is not inside the ISO.
func planFromISO(a streammeta.Artifact, size int64, isoID, isoPath string) (steps []rehydrate.Step, ok bool, err error) {
	f, isoSize, err := openSized(isoPath)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	img, err := iso.Open(f, isoSize)
	if err != nil {
		return nil, false, nil // not an ISO we can read: store the PXE file another way
	}
	ext, err := img.FindContent(size, a.UncompressedSHA256)
	if errors.Is(err, iso.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return []rehydrate.Step{
		{Op: rehydrate.OpRef, Ref: isoID},
		{Op: rehydrate.OpExtract, Offset: ext.Offset, Length: ext.Size},
	}, true, nil
}

// Package platformid reads the ignition.platform.id of a Fedora CoreOS disk: it finds the
// boot partition in the GPT, reads the ostree BLS entries (loader/entries/*.conf) from its
// ext4 filesystem and returns the value of the ignition.platform.id= kernel argument. It
// reads a raw (guest) view given as an io.ReaderAt and knows nothing of disk image formats.
package platformid

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf16"
)

// ErrNotFound means the disk has no boot partition, BLS entry or platform id.
var ErrNotFound = errors.New("platformid: not found")

// ErrCorrupt marks on-disk structures that contradict themselves.
var ErrCorrupt = errors.New("platformid: corrupt disk")

// Info is what Read found.
type Info struct {
	ID        string // the ignition.platform.id value, e.g. "aws"
	Partition int    // GPT partition number (1-based) of the boot filesystem
	Entry     string // the BLS entry it came from, e.g. "/loader/entries/ostree-1.conf"
	Options   string // that entry's options line
}

// partition is one GPT entry.
type partition struct {
	num         int
	name        string
	first, last uint64 // LBAs
}

// Read reads the platform id from the size-byte raw disk in r.
func Read(r io.ReaderAt, size int64) (*Info, error) {
	parts, sector, err := readGPT(r, size)
	if err != nil {
		return nil, err
	}
	// The partition labelled "boot" first (FCOS's), then any other ext4 with BLS entries.
	sort.SliceStable(parts, func(i, j int) bool { return parts[i].name == "boot" && parts[j].name != "boot" })
	var firstErr error
	for _, p := range parts {
		off, end := int64(p.first)*sector, (int64(p.last)+1)*sector
		if p.last < p.first || end > size || off < 0 {
			return nil, fmt.Errorf("%w: GPT partition %d (LBA %d-%d) lies outside the %d-byte disk", ErrCorrupt, p.num, p.first, p.last, size)
		}
		info, err := readBoot(r, off, end-off)
		if err == nil {
			info.Partition = p.num
			return info, nil
		}
		if errors.Is(err, ErrNotExt4) || errors.Is(err, errNotFound) {
			continue
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("partition %d (%q) at offset %#x: %w", p.num, p.name, off, err)
		}
	}
	if firstErr != nil {
		return nil, fmt.Errorf("platformid: %w", firstErr)
	}
	return nil, fmt.Errorf("%w: no partition holds an ext4 filesystem with loader/entries/*.conf", ErrNotFound)
}

// readGPT finds the GPT header at LBA 1 for 512- or 4096-byte sectors.
func readGPT(r io.ReaderAt, size int64) ([]partition, int64, error) {
	le := binary.LittleEndian
	for _, sector := range []int64{512, 4096} {
		h := make([]byte, 92)
		if size < 2*sector || readFull(r, h, sector) != nil || string(h[:8]) != "EFI PART" {
			continue
		}
		entriesLBA, count, esize := le.Uint64(h[72:]), le.Uint32(h[80:]), le.Uint32(h[84:])
		if esize < 128 || esize > 4096 || count > 1024 {
			return nil, 0, fmt.Errorf("%w: GPT header at offset %#x: %d entries of %d bytes", ErrCorrupt, sector, count, esize)
		}
		tab := make([]byte, int64(count)*int64(esize))
		off := int64(entriesLBA) * sector
		if entriesLBA > uint64(size/sector) || off+int64(len(tab)) > size {
			return nil, 0, fmt.Errorf("%w: GPT partition entries at LBA %d lie outside the disk", ErrCorrupt, entriesLBA)
		}
		if err := readFull(r, tab, off); err != nil {
			return nil, 0, fmt.Errorf("platformid: GPT entries: %w", err)
		}
		var parts []partition
		for i := uint32(0); i < count; i++ {
			e := tab[int64(i)*int64(esize):]
			if bytes.Equal(e[:16], make([]byte, 16)) {
				continue
			}
			u := make([]uint16, 36)
			for j := range u {
				u[j] = le.Uint16(e[56+2*j:])
			}
			name := string(utf16.Decode(u))
			if k := strings.IndexByte(name, 0); k >= 0 {
				name = name[:k]
			}
			parts = append(parts, partition{num: int(i) + 1, name: name, first: le.Uint64(e[32:]), last: le.Uint64(e[40:])})
		}
		return parts, sector, nil
	}
	return nil, 0, fmt.Errorf("%w: no GPT (no \"EFI PART\" header at LBA 1 for 512- or 4096-byte sectors)", ErrNotFound)
}

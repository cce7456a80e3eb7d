package platformid

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"sort"
	"strings"

	"github.com/rehydrator/rehydrator/ext4"
)

// ErrNotExt4 means a partition does not hold an ext2/3/4 filesystem.
var ErrNotExt4 = ext4.ErrNotExt4

var errNotFound = iofs.ErrNotExist

// readBoot reads the BLS entries of the ext4 filesystem at off.
func readBoot(r io.ReaderAt, off, size int64) (*Info, error) {
	info, err := readBLS(io.NewSectionReader(r, off, size), size)
	if errors.Is(err, ext4.ErrCorrupt) {
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return info, err
}

func readBLS(r io.ReaderAt, size int64) (*Info, error) {
	f, err := ext4.Open(r, size)
	if err != nil {
		return nil, err
	}
	ents, err := f.ReadDir("/loader/entries")
	if err != nil {
		return nil, err
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	for _, e := range ents {
		if !strings.HasSuffix(e.Name, ".conf") {
			continue
		}
		b, err := f.ReadFile("/loader/entries/" + e.Name)
		if err != nil {
			return nil, fmt.Errorf("loader/entries/%s: %w", e.Name, err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || fields[0] != "options" {
				continue
			}
			for _, a := range fields[1:] {
				if v, ok := strings.CutPrefix(a, "ignition.platform.id="); ok {
					return &Info{ID: v, Entry: "/loader/entries/" + e.Name, Options: strings.Join(fields[1:], " ")}, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("loader/entries: no options line with ignition.platform.id=: %w", errNotFound)
}

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at offset %#x: %w", len(b), off, err)
}

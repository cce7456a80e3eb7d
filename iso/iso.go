// Package iso reads ISO 9660 images: it lists the files of an image (with their
// Rock Ridge or Joliet names where present), finds a file's byte extent, and finds
// a file by its content. The rehydrate planner uses it to express the PXE kernel,
// initramfs and rootfs of Fedora CoreOS as byte ranges of the live ISO.
//
// Like archive/tar it reads through an io.ReaderAt and never loads the image into
// memory. Every structure it reads is checked against the image's bounds and
// against fixed limits, so a hostile image gives an error (ErrNotISO or
// ErrCorrupt, wrapped in a *FormatError that names the byte offset), never a
// panic, an endless loop or an unbounded allocation.
package iso

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotISO means the bytes are not an ISO 9660 image at all.
	ErrNotISO = errors.New("not an ISO 9660 image")
	// ErrCorrupt means the image claims to be ISO 9660 but a structure in it is
	// malformed, inconsistent or beyond this package's limits.
	ErrCorrupt = errors.New("corrupt ISO 9660 image")
	// ErrNotFound means Lookup or FindContent found no such file.
	ErrNotFound = errors.New("not found")
)

// FormatError reports what is wrong with an image and where.
type FormatError struct {
	Offset int64  // byte offset in the image of the faulty structure
	Reason string // what is wrong with it
	Err    error  // ErrNotISO, ErrCorrupt, or errors.ErrUnsupported (interleaved files)
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("iso: %v at byte offset %d: %s", e.Err, e.Offset, e.Reason)
}

func (e *FormatError) Unwrap() error { return e.Err }

func corrupt(off int64, format string, args ...any) error {
	return &FormatError{Offset: off, Reason: fmt.Sprintf(format, args...), Err: ErrCorrupt}
}

func notISO(off int64, format string, args ...any) error {
	return &FormatError{Offset: off, Reason: fmt.Sprintf(format, args...), Err: ErrNotISO}
}

// Extent is a run of bytes of the image.
type Extent struct {
	Offset, Size int64
}

// File is a file or directory of the image.
type File struct {
	// Path is absolute and slash-separated, e.g. "/images/pxeboot/vmlinuz". Its
	// components are the Rock Ridge names if the image has Rock Ridge, else the
	// Joliet names if it has Joliet, else the ISO 9660 names without the ";1"
	// version suffix (and without the trailing dot of names with no extension).
	Path string
	// Offset is the byte offset of the first byte of the file's data (of its
	// first extent for multi-extent files). Size is the total data size.
	Offset, Size int64
	IsDir        bool
	// Mode holds the type and permission bits from the Rock Ridge PX entry if
	// present, else fs.ModeDir|0555 for directories and 0444 for files. It tells
	// regular files from symbolic links, devices and the like.
	Mode fs.FileMode
	// Extents lists the file's data in order: one entry for an ordinary file,
	// several for a multi-extent file (ISO 9660 level 3, files of 4 GiB and more).
	// An empty file has one extent of size 0 whose offset means nothing.
	Extents []Extent
}

// Contiguous reports whether the file's data is one run of image bytes, that is
// whether Extent{f.Offset, f.Size} holds exactly its content.
func (f File) Contiguous() bool {
	next := f.Offset
	for _, e := range f.Extents {
		if e.Size == 0 {
			continue
		}
		if e.Offset != next {
			return false
		}
		next = e.Offset + e.Size
	}
	return true
}

const (
	sectorSize    = 2048            // logical sector: descriptors and directory records align to it
	descriptorOff = 16 * sectorSize // the volume descriptor set starts after the system area
	rootRecordOff = 156             // root directory record inside a volume descriptor
	volumeIDOff   = 40              // volume identifier inside a volume descriptor

	// Limits that bound the work done on hostile images. Honest images are far
	// below them (a Fedora CoreOS live ISO has a few dozen entries).
	maxDescriptor = 64       // volume descriptors read while looking for a terminator
	maxDepth      = 256      // directory nesting
	maxEntries    = 1 << 18  // directory entries in one walk
	maxNameLen    = 1024     // bytes of one name
	maxPathLen    = 8192     // bytes of one path
	maxSUSP       = 64 << 10 // system use bytes of one record, continuation areas included
	maxContinue   = 32       // continuation areas of one record
	maxSections   = 1 << 16  // sections of one multi-extent file
)

// jolietEscapes are the escape sequences of a Joliet supplementary volume
// descriptor (UCS-2 levels 1, 2 and 3).
var jolietEscapes = [][]byte{[]byte("%/@"), []byte("%/C"), []byte("%/E")}

// naming says which names a directory tree is read with.
type naming int

const (
	namesISO       naming = iota // primary tree, ISO 9660 names
	namesRockRidge               // primary tree, Rock Ridge NM names where present
	namesJoliet                  // supplementary tree, UCS-2 names
)

// Image is an opened ISO 9660 image. Its methods are safe for concurrent use.
type Image struct {
	r         io.ReaderAt
	size      int64
	blockSize int64
	volumeID  string

	primary    Extent  // root directory of the primary tree
	joliet     *Extent // root directory of the Joliet tree, if any
	primaryRec int64   // offsets of the root directory records, for messages
	jolietRec  int64
	rootMode   fs.FileMode

	rockRidge bool // primary tree carries Rock Ridge names (SUSP "SP" in the root)
	suspSkip  int  // bytes to skip at the start of each system use area (SP LEN_SKP)

	once     sync.Once
	files    []File
	filesErr error
}

// Open reads the volume descriptors of an ISO 9660 image of size bytes: the
// primary volume descriptor, a Joliet supplementary descriptor if there is one,
// and whether the primary tree carries Rock Ridge entries. El Torito boot
// records and other descriptors are skipped. An image shorter than the
// volume its primary descriptor declares (a truncated download) is ErrCorrupt.
func Open(r io.ReaderAt, size int64) (*Image, error) {
	if size < descriptorOff+sectorSize {
		return nil, notISO(0, "image of %d bytes is too small to hold a volume descriptor at byte %d", size, descriptorOff)
	}
	im := &Image{r: r, size: size}
	buf := make([]byte, sectorSize)
	var pvd, svd int64 = -1, -1
	for i := int64(0); i < maxDescriptor; i++ {
		off := descriptorOff + i*sectorSize
		if off+sectorSize > size {
			if pvd < 0 {
				return nil, notISO(off, "volume descriptor set runs past the end of the %d-byte image", size)
			}
			break
		}
		if err := im.readAt(buf, off); err != nil {
			return nil, err
		}
		if string(buf[1:6]) != "CD001" {
			switch {
			case i == 0:
				return nil, notISO(off+1, "no CD001 volume descriptor identifier")
			case pvd < 0:
				return nil, corrupt(off+1, "volume descriptor %d has no CD001 identifier and no primary descriptor came before it", i)
			}
			break // a missing terminator after the primary descriptor is tolerated
		}
		typ := buf[0]
		if typ == 255 {
			break
		}
		switch {
		case typ == 1 && pvd < 0:
			pvd = off
			if err := im.primaryDescriptor(buf, off); err != nil {
				return nil, err
			}
		case typ == 2 && svd < 0 && buf[6] == 1 && isJoliet(buf[88:120]):
			svd = off
		}
		// Type 0 (boot record, El Torito), 3 (partition) and anything else: skip.
	}
	if pvd < 0 {
		return nil, notISO(descriptorOff, "no primary volume descriptor in the volume descriptor set")
	}
	if svd >= 0 {
		// Read after the loop: the primary descriptor's block size must be known.
		if err := im.readAt(buf, svd); err != nil {
			return nil, err
		}
		root, err := im.rootRecord(buf, svd)
		if err != nil {
			return nil, err
		}
		im.joliet, im.jolietRec = &root, svd+rootRecordOff
	}
	if err := im.detectRockRidge(); err != nil {
		return nil, err
	}
	return im, nil
}

// primaryDescriptor checks the primary volume descriptor in d (at offset off)
// and records the block size, volume ID and root directory.
func (im *Image) primaryDescriptor(d []byte, off int64) error {
	if d[6] != 1 {
		return corrupt(off+6, "primary volume descriptor version %d, want 1", d[6])
	}
	bs, err := blockSize(d, off)
	if err != nil {
		return err
	}
	im.blockSize = bs
	blocks, ok := both32(d[80:88])
	if !ok {
		return corrupt(off+80, "volume space size halves disagree (% x)", d[80:88])
	}
	if int64(blocks)*bs > im.size {
		return corrupt(off+80, "volume of %d blocks of %d bytes (%d bytes) does not fit in the %d-byte image (truncated?)", blocks, bs, int64(blocks)*bs, im.size)
	}
	im.volumeID = strings.TrimRight(string(d[volumeIDOff:volumeIDOff+32]), " \x00")
	root, err := im.rootRecord(d, off)
	if err != nil {
		return err
	}
	im.primary, im.primaryRec = root, off+rootRecordOff
	return nil
}

// blockSize reads the logical block size of a volume descriptor.
func blockSize(d []byte, off int64) (int64, error) {
	v, ok := both16(d[128:132])
	if !ok {
		return 0, corrupt(off+128, "logical block size halves disagree (% x)", d[128:132])
	}
	switch v {
	case 512, 1024, 2048:
		return int64(v), nil
	}
	return 0, corrupt(off+128, "logical block size %d, want 512, 1024 or 2048", v)
}

// rootRecord parses the root directory record of a volume descriptor.
func (im *Image) rootRecord(d []byte, off int64) (Extent, error) {
	if bs, err := blockSize(d, off); err != nil {
		return Extent{}, err
	} else if bs != im.blockSize {
		return Extent{}, corrupt(off+128, "logical block size %d differs from the primary descriptor's %d", bs, im.blockSize)
	}
	recOff := off + rootRecordOff
	raw := d[rootRecordOff : rootRecordOff+34]
	if raw[0] != 34 {
		return Extent{}, corrupt(recOff, "root directory record length %d, want 34", raw[0])
	}
	rec, err := im.parseRecord(raw, recOff)
	if err != nil {
		return Extent{}, err
	}
	if rec.flags&flagDir == 0 {
		return Extent{}, corrupt(recOff+25, "root directory record is not flagged as a directory")
	}
	return rec.extent, nil
}

func isJoliet(esc []byte) bool {
	for _, s := range jolietEscapes {
		if bytes.Contains(esc, s) {
			return true
		}
	}
	return false
}

// VolumeID returns the volume identifier of the primary volume descriptor, for
// example "fedora-coreos-40.20240416.3.1".
func (im *Image) VolumeID() string { return im.volumeID }

// readAt reads exactly len(p) bytes at off.
func (im *Image) readAt(p []byte, off int64) error {
	if off < 0 || off > im.size-int64(len(p)) {
		return corrupt(off, "read of %d bytes runs past the end of the %d-byte image", len(p), im.size)
	}
	n, err := im.r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("iso: read %d bytes at byte offset %d: %w", len(p), off, err)
}

// both16 decodes an ISO 9660 both-byte-order 16-bit number and reports whether
// its little- and big-endian halves agree.
func both16(b []byte) (uint16, bool) {
	le := uint16(b[0]) | uint16(b[1])<<8
	be := uint16(b[3]) | uint16(b[2])<<8
	return le, le == be
}

// both32 decodes an ISO 9660 both-byte-order 32-bit number.
func both32(b []byte) (uint32, bool) {
	le := uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	be := uint32(b[7]) | uint32(b[6])<<8 | uint32(b[5])<<16 | uint32(b[4])<<24
	return le, le == be
}

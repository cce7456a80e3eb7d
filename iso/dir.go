package iso

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"unicode/utf16"
)

// Directory record flags (ECMA-119 9.1.6).
const (
	flagDir         = 0x02
	flagAssociated  = 0x04
	flagMultiExtent = 0x80
)

// record is a parsed directory record. ident and su alias the caller's buffer.
type record struct {
	off    int64  // byte offset of the record in the image
	extent Extent // the data, after any extended attribute record
	flags  byte
	ident  []byte // file identifier as recorded
	su     []byte // system use area (SUSP / Rock Ridge entries)
	suOff  int64
}

func (r record) special() bool { return len(r.ident) == 1 && r.ident[0] <= 1 } // "." or ".."

// parseRecord parses the directory record b (exactly its own length) found at
// byte offset off.
func (im *Image) parseRecord(b []byte, off int64) (record, error) {
	if len(b) < 34 {
		return record{}, corrupt(off, "directory record length %d is below the 34-byte minimum", len(b))
	}
	lba, ok := both32(b[2:10])
	if !ok {
		return record{}, corrupt(off+2, "directory record extent location halves disagree (% x)", b[2:10])
	}
	n, ok := both32(b[10:18])
	if !ok {
		return record{}, corrupt(off+10, "directory record data length halves disagree (% x)", b[10:18])
	}
	if b[26] != 0 || b[27] != 0 {
		return record{}, &FormatError{Offset: off + 26, Err: errors.ErrUnsupported,
			Reason: fmt.Sprintf("interleaved file (unit size %d, gap %d)", b[26], b[27])}
	}
	nameLen := int(b[32])
	if nameLen == 0 {
		return record{}, corrupt(off+32, "directory record has an empty file identifier")
	}
	if 33+nameLen > len(b) {
		return record{}, corrupt(off+32, "file identifier of %d bytes runs past the end of its %d-byte directory record", nameLen, len(b))
	}
	suStart := 33 + nameLen
	if nameLen%2 == 0 {
		suStart++ // padding byte keeps the system use area at an even offset
	}
	suStart = min(suStart, len(b))
	start := (int64(lba) + int64(b[1])) * im.blockSize
	ext := Extent{Offset: start, Size: int64(n)}
	if n > 0 && start+ext.Size > im.size {
		return record{}, corrupt(off+2, "extent of %d bytes at byte %d runs past the end of the %d-byte image", n, start, im.size)
	}
	return record{off: off, extent: ext, flags: b[25], ident: b[33 : 33+nameLen], su: b[suStart:], suOff: off + int64(suStart)}, nil
}

// budget bounds the bytes read while walking: honest directories and
// continuation areas never overlap, so together they fit in the image.
type budget struct{ left, limit int64 }

func newBudget(n int64) *budget { return &budget{left: n, limit: n} }

func (b *budget) spend(n, off int64) error {
	b.left -= n
	if b.left < 0 {
		return corrupt(off, "directories and continuation areas add up to more than the image's %d bytes (overlapping or repeated extents)", b.limit)
	}
	return nil
}

// entry is one name in a directory: a file (all sections of a multi-extent
// file merged) or a subdirectory.
type entry struct {
	name    string // name in the tree being read
	isoName string // ISO 9660 name without version, for case-insensitive fallback
	recOff  int64  // offset of its (first) directory record
	isDir   bool
	mode    fs.FileMode
	extents []Extent
	size    int64
}

// walker reads directories of one tree under shared limits.
type walker struct {
	im      *Image
	names   naming
	budget  *budget
	entries int // entries still allowed
}

func (im *Image) newWalker(names naming) *walker {
	return &walker{im: im, names: names, budget: newBudget(im.size), entries: maxEntries}
}

// readDir reads the directory whose data is dir; recOff (the offset of the
// record that named it) is only for error messages.
func (w *walker) readDir(dir Extent, recOff int64) ([]entry, error) {
	if err := w.budget.spend(dir.Size, recOff); err != nil {
		return nil, err
	}
	var (
		out        []entry
		chain      *entry // multi-extent file still collecting sections
		chainIdent []byte
		buf        = make([]byte, sectorSize)
		end        = dir.Offset + dir.Size
	)
	for pos := dir.Offset; pos < end; {
		next := min((pos/sectorSize+1)*sectorSize, end)
		n := int(next - pos)
		if err := w.im.readAt(buf[:n], pos); err != nil {
			return nil, err
		}
		for i := 0; i < n; {
			l := int(buf[i])
			if l == 0 {
				break // the rest of the sector is padding
			}
			off := pos + int64(i)
			if i+l > n {
				if next == end && end%sectorSize != 0 {
					return nil, corrupt(off, "directory record of %d bytes runs past the end of its %d-byte directory", l, dir.Size)
				}
				return nil, corrupt(off, "directory record of %d bytes runs past the end of its %d-byte sector", l, sectorSize)
			}
			rec, err := w.im.parseRecord(buf[i:i+l], off)
			if err != nil {
				return nil, err
			}
			i += l
			if chain != nil {
				if rec.special() || !bytes.Equal(rec.ident, chainIdent) || rec.flags&flagDir != 0 {
					return nil, corrupt(off, "multi-extent file %q (record at byte %d) is followed by another record before its final section", chainIdent, chain.recOff)
				}
				if len(chain.extents) >= maxSections {
					return nil, corrupt(off, "multi-extent file %q has more than %d sections", chainIdent, maxSections)
				}
				chain.extents = append(chain.extents, rec.extent)
				chain.size += rec.extent.Size
				if rec.flags&flagMultiExtent == 0 {
					out = append(out, *chain)
					chain = nil
				}
				continue
			}
			if rec.special() || rec.flags&flagAssociated != 0 {
				continue
			}
			e, keep, err := w.newEntry(rec)
			if err != nil {
				return nil, err
			}
			if !keep {
				continue
			}
			if w.entries--; w.entries < 0 {
				return nil, corrupt(off, "more than %d directory entries", maxEntries)
			}
			if rec.flags&flagMultiExtent != 0 {
				if e.isDir {
					return nil, corrupt(off+25, "directory %q is flagged as multi-extent", e.name)
				}
				chain, chainIdent = &e, bytes.Clone(rec.ident)
				continue
			}
			out = append(out, e)
		}
		pos = next
	}
	if chain != nil {
		return nil, corrupt(chain.recOff, "multi-extent file %q has no final section before the end of its directory", chainIdent)
	}
	return out, nil
}

// newEntry turns a record into an entry named for the walker's tree; keep is
// false for records that are not listed (Rock Ridge relocated directories,
// which appear where their CL entry is).
func (w *walker) newEntry(rec record) (e entry, keep bool, err error) {
	e = entry{recOff: rec.off, isDir: rec.flags&flagDir != 0, extents: []Extent{rec.extent}, size: rec.extent.Size}
	switch w.names {
	case namesJoliet:
		if e.name, err = jolietName(rec.ident, e.isDir, rec.off+33); err != nil {
			return entry{}, false, err
		}
		e.isoName = e.name
	default:
		e.isoName = isoName(rec.ident, e.isDir)
		e.name = e.isoName
	}
	hasMode := false
	if w.names == namesRockRidge {
		info, err := w.im.susp(rec.su, rec.suOff, w.im.suspSkip, w.budget)
		if err != nil {
			return entry{}, false, err
		}
		if info.relocated && e.isDir {
			return entry{}, false, nil
		}
		if info.hasName {
			e.name = string(info.name)
		}
		if info.hasMode {
			e.mode, hasMode = posixMode(info.mode), true
		}
		if info.hasChild {
			ext, err := w.im.relocatedDir(info.child, info.childOff)
			if err != nil {
				return entry{}, false, err
			}
			e.isDir, e.extents, e.size = true, []Extent{ext}, ext.Size
		}
	}
	switch {
	case !hasMode && e.isDir:
		e.mode = fs.ModeDir | 0o555
	case !hasMode:
		e.mode = 0o444
	case e.isDir: // the ISO 9660 flag (or a CL entry) decides, not PX
		e.mode = e.mode&^fs.ModeType | fs.ModeDir
	default:
		e.mode &^= fs.ModeDir
	}
	if err := checkName(e.name, rec.off); err != nil {
		return entry{}, false, err
	}
	return e, true, nil
}

// checkName refuses names that cannot be one path component.
func checkName(name string, off int64) error {
	switch {
	case name == "" || name == "." || name == "..":
		return corrupt(off, "file name %q cannot be a path component", name)
	case strings.ContainsAny(name, "/\x00"):
		return corrupt(off, "file name %q contains a slash or NUL byte", name)
	case len(name) > maxNameLen:
		return corrupt(off, "file name of %d bytes is longer than %d", len(name), maxNameLen)
	}
	return nil
}

// isoName is an ISO 9660 identifier without its ";1" version and without the
// trailing dot of a name that has no extension.
func isoName(ident []byte, dir bool) string {
	s := string(ident)
	if dir {
		return s
	}
	if i := strings.LastIndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 1 {
		s = strings.TrimSuffix(s, ".")
	}
	return s
}

// jolietName decodes a Joliet (UCS-2 big-endian) identifier found at off.
func jolietName(ident []byte, dir bool, off int64) (string, error) {
	if len(ident)%2 != 0 {
		return "", corrupt(off, "Joliet file identifier has an odd length %d", len(ident))
	}
	u := make([]uint16, len(ident)/2)
	for i := range u {
		u[i] = uint16(ident[2*i])<<8 | uint16(ident[2*i+1])
	}
	s := string(utf16.Decode(u))
	if !dir {
		if i := strings.LastIndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
	}
	return s, nil
}

// relocatedDir finds the directory a Rock Ridge CL entry (at off) points to,
// by reading the "." record that starts it.
func (im *Image) relocatedDir(lba uint32, off int64) (Extent, error) {
	start := int64(lba) * im.blockSize
	if start+34 > im.size {
		return Extent{}, corrupt(off, "Rock Ridge CL entry points to block %d, past the end of the image", lba)
	}
	buf := make([]byte, 34)
	if err := im.readAt(buf, start); err != nil {
		return Extent{}, err
	}
	if buf[0] < 34 || buf[32] != 1 || buf[33] != 0 {
		return Extent{}, corrupt(off, "Rock Ridge CL entry points to block %d, which does not start with a \".\" directory record", lba)
	}
	rec, err := im.parseRecord(buf, start)
	if err != nil {
		return Extent{}, err
	}
	if rec.flags&flagDir == 0 || rec.extent.Offset != start {
		return Extent{}, corrupt(off, "Rock Ridge CL entry points to block %d, whose \".\" record is not a directory starting there", lba)
	}
	return rec.extent, nil
}

// suspInfo is what the System Use Sharing Protocol entries of one record say.
type suspInfo struct {
	sp        bool // SP: SUSP in use (root "." only)
	skip      int  // SP LEN_SKP
	rrip      bool // some Rock Ridge entry was seen
	name      []byte
	hasName   bool
	mode      uint32
	hasMode   bool
	child     uint32 // CL: block of a relocated directory
	childOff  int64
	hasChild  bool
	relocated bool // RE: this directory is shown elsewhere via CL
}

// susp parses the system use area su found at off, following CE continuation
// areas; skip is the SP LEN_SKP of the volume.
func (im *Image) susp(su []byte, off int64, skip int, b *budget) (suspInfo, error) {
	var info suspInfo
	skip = min(skip, len(su))
	area, off := su[skip:], off+int64(skip)
	total := 0
	for hop := 0; ; hop++ {
		var ce *Extent
		var ceOff int64
	entries:
		for len(area) >= 4 {
			if area[0] == 0 {
				break // padding
			}
			l := int(area[2])
			if l < 4 || l > len(area) {
				return info, corrupt(off, "system use entry %q has length %d with %d bytes left in its area", area[:2], l, len(area))
			}
			sig, data := string(area[:2]), area[4:l]
			short := func(want int) error {
				return corrupt(off, "system use entry %q of %d bytes is shorter than %d", sig, l, want)
			}
			switch sig {
			case "ST":
				break entries
			case "CE":
				if l < 28 {
					return info, short(28)
				}
				blk, ok1 := both32(data[0:8])
				o, ok2 := both32(data[8:16])
				n, ok3 := both32(data[16:24])
				if !ok1 || !ok2 || !ok3 {
					return info, corrupt(off, "CE continuation entry halves disagree")
				}
				ce, ceOff = &Extent{Offset: int64(blk)*im.blockSize + int64(o), Size: int64(n)}, off
			case "SP":
				if l >= 7 && data[0] == 0xBE && data[1] == 0xEF {
					info.sp, info.skip = true, int(data[2])
				}
			case "NM":
				if l < 5 {
					return info, short(5)
				}
				if data[0]&(2|4) == 0 { // not "." or ".."
					info.name = append(info.name, data[1:]...)
					info.hasName = true
					if len(info.name) > maxNameLen {
						return info, corrupt(off, "Rock Ridge name longer than %d bytes", maxNameLen)
					}
				}
				info.rrip = true
			case "PX":
				if l < 36 {
					return info, short(36)
				}
				m, ok := both32(data[0:8])
				if !ok {
					return info, corrupt(off, "PX file mode halves disagree (% x)", data[0:8])
				}
				info.mode, info.hasMode, info.rrip = m, true, true
			case "CL":
				if l < 12 {
					return info, short(12)
				}
				c, ok := both32(data[0:8])
				if !ok {
					return info, corrupt(off, "CL child link halves disagree (% x)", data[0:8])
				}
				info.child, info.childOff, info.hasChild, info.rrip = c, off, true, true
			case "RE":
				info.relocated, info.rrip = true, true
			case "RR", "TF", "SL", "PN", "SF", "PL":
				info.rrip = true
			case "ER":
				if l >= 8 && 4+int(data[0]) <= len(data) {
					id := string(data[4 : 4+int(data[0])])
					if id == "RRIP_1991A" || id == "IEEE_P1282" || id == "IEEE_1282" {
						info.rrip = true
					}
				}
			}
			area, off = area[l:], off+int64(l)
		}
		if ce == nil {
			return info, nil
		}
		if hop >= maxContinue {
			return info, corrupt(ceOff, "more than %d chained continuation areas", maxContinue)
		}
		if total += int(ce.Size); total > maxSUSP {
			return info, corrupt(ceOff, "continuation areas of one record add up to more than %d bytes", maxSUSP)
		}
		if ce.Offset+ce.Size > im.size {
			return info, corrupt(ceOff, "continuation area of %d bytes at byte %d runs past the end of the %d-byte image", ce.Size, ce.Offset, im.size)
		}
		if err := b.spend(ce.Size, ceOff); err != nil {
			return info, err
		}
		area = make([]byte, ce.Size)
		if err := im.readAt(area, ce.Offset); err != nil {
			return info, err
		}
		off = ce.Offset
	}
}

// posixMode converts a Rock Ridge PX st_mode to an fs.FileMode.
func posixMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	switch m & 0o170000 {
	case 0o040000:
		mode |= fs.ModeDir
	case 0o120000:
		mode |= fs.ModeSymlink
	case 0o140000:
		mode |= fs.ModeSocket
	case 0o060000:
		mode |= fs.ModeDevice
	case 0o020000:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case 0o010000:
		mode |= fs.ModeNamedPipe
	}
	return mode
}

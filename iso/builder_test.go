package iso

import (
	"encoding/binary"
	"strings"
	"unicode/utf16"
)

// This file lays out small ISO 9660 images in Go, for what xorriso will not
// write: multi-extent files without 4 GiB of data, cycles, hostile records.

// node is a file or directory of a built image.
type node struct {
	name     string  // Rock Ridge / Joliet name; its upper case is the ISO 9660 name
	data     []byte  // file content
	sections int     // > 1: record the file as a multi-extent file of that many sections
	gap      bool    // leave a free sector between sections (non-contiguous data)
	kids     []*node // entries of a directory; nil for files
	dir      bool
	su       []byte // extra system use entries for its record (Rock Ridge images)

	lba, jlba int   // first sector of its data (directory) in the primary / Joliet tree
	recOff    []int // offsets of its records in the primary tree (one per section)
	secs      []Extent
}

func dirNode(name string, kids ...*node) *node { return &node{name: name, dir: true, kids: kids} }
func fileNode(name string, data []byte) *node  { return &node{name: name, data: data} }

// builder accumulates sectors; sectors 16 (PVD), 17 (Joliet SVD or
// terminator) and 18 (terminator) are written by build.
type builder struct {
	img []byte
}

func newBuilder() *builder { return &builder{img: make([]byte, 19*sectorSize)} }

// alloc appends n zeroed sectors and returns the first one's number.
func (b *builder) alloc(n int) int {
	lba := len(b.img) / sectorSize
	b.img = append(b.img, make([]byte, n*sectorSize)...)
	return lba
}

func (b *builder) put(lba int, data []byte) { copy(b.img[lba*sectorSize:], data) }

// build lays out root and returns the image.
func (b *builder) build(root *node, rockRidge, joliet bool) []byte {
	b.layout(root, rockRidge, false)
	if joliet {
		b.layout(root, false, true)
	}
	b.layoutData(root)
	b.writeDir(root, root, rockRidge, false)
	if joliet {
		b.writeDir(root, root, false, true)
	}
	b.descriptor(16, 1, root.lba, b.dirSize(root, rockRidge, false), "")
	if joliet {
		b.descriptor(17, 2, root.jlba, b.dirSize(root, false, true), "%/E")
	} else {
		b.terminator(17)
	}
	b.terminator(18)
	return b.img
}

func (b *builder) terminator(sector int) {
	copy(b.img[sector*sectorSize:], append([]byte{255}, "CD001\x01"...))
}

func (b *builder) descriptor(sector int, typ byte, rootLBA, rootSize int, escapes string) {
	d := b.img[sector*sectorSize : (sector+1)*sectorSize]
	d[0] = typ
	copy(d[1:], "CD001\x01")
	copy(d[40:72], strings.Repeat(" ", 32))
	copy(d[40:], "TEST")
	putBoth32(d[80:], uint32(len(b.img)/sectorSize))
	copy(d[88:], escapes)
	putBoth16(d[120:], 1)
	putBoth16(d[124:], 1)
	putBoth16(d[128:], sectorSize)
	copy(d[156:], dirRecord("\x00", rootLBA, rootSize, flagDir, nil))
	d[881] = 1 // file structure version: libisofs refuses 0
}

func putBoth16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b, v)
	binary.BigEndian.PutUint16(b[2:], v)
}

func putBoth32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b, v)
	binary.BigEndian.PutUint32(b[4:], v)
}

// dirRecord encodes one directory record.
func dirRecord(ident string, lba, size int, flags byte, su []byte) []byte {
	n := 33 + len(ident)
	if len(ident)%2 == 0 {
		n++
	}
	r := make([]byte, n, n+len(su))
	r = append(r, su...)
	if len(r) > 255 {
		panic("directory record too long")
	}
	r[0] = byte(len(r))
	putBoth32(r[2:], uint32(lba))
	putBoth32(r[10:], uint32(size))
	r[25] = flags
	putBoth16(r[28:], 1)
	r[32] = byte(len(ident))
	copy(r[33:], ident)
	return r
}

// packRecords lays records into sectors without letting one cross a sector
// boundary, and returns the offset of each in the result.
func packRecords(recs [][]byte) ([]byte, []int) {
	var out []byte
	var offs []int
	for _, r := range recs {
		if len(out)/sectorSize != (len(out)+len(r)-1)/sectorSize {
			out = append(out, make([]byte, sectorSize-len(out)%sectorSize)...)
		}
		offs = append(offs, len(out))
		out = append(out, r...)
	}
	if len(out)%sectorSize != 0 {
		out = append(out, make([]byte, sectorSize-len(out)%sectorSize)...)
	}
	return out, offs
}

// susp entries
func suEntry(sig string, data ...byte) []byte {
	return append([]byte{sig[0], sig[1], byte(4 + len(data)), 1}, data...)
}
func suSP() []byte { return suEntry("SP", 0xBE, 0xEF, 0) }
func suER() []byte {
	id := "RRIP_1991A"
	return suEntry("ER", append([]byte{byte(len(id)), 0, 0, 1}, id...)...)
}
func suNM(name string) []byte { return suEntry("NM", append([]byte{0}, name...)...) }
func suPX(mode uint32) []byte {
	d := make([]byte, 32)
	putBoth32(d, mode)
	putBoth32(d[8:], 1)
	return suEntry("PX", d...)
}
func suCE(lba, off, n int) []byte {
	d := make([]byte, 24)
	putBoth32(d, uint32(lba))
	putBoth32(d[8:], uint32(off))
	putBoth32(d[16:], uint32(n))
	return suEntry("CE", d...)
}
func suCL(lba int) []byte {
	d := make([]byte, 8)
	putBoth32(d, uint32(lba))
	return suEntry("CL", d...)
}
func suRE() []byte { return suEntry("RE") }

func (n *node) isoIdent(joliet bool) string {
	name := n.name
	if !n.dir {
		name += ";1"
	}
	if joliet {
		var s []byte
		for _, u := range utf16.Encode([]rune(name)) {
			s = append(s, byte(u>>8), byte(u))
		}
		return string(s)
	}
	return strings.ToUpper(name)
}

// records returns the directory records of dir (without knowing LBAs yet on
// the first pass: their lengths do not depend on them).
func (b *builder) records(dir, parent *node, rockRidge, joliet bool) [][]byte {
	lba, plba := dir.lba, parent.lba
	if joliet {
		lba, plba = dir.jlba, parent.jlba
	}
	var dot []byte
	if rockRidge && dir == parent {
		dot = append(suSP(), suER()...)
	}
	recs := [][]byte{
		dirRecord("\x00", lba, b.dirSize(dir, rockRidge, joliet), flagDir, dot),
		dirRecord("\x01", plba, b.dirSize(parent, rockRidge, joliet), flagDir, nil),
	}
	for _, k := range dir.kids {
		var su []byte
		if rockRidge {
			mode := uint32(0o100644)
			if k.dir {
				mode = 0o040755
			}
			su = append(append(suNM(k.name), suPX(mode)...), k.su...)
		}
		switch {
		case k.dir:
			klba := k.lba
			if joliet {
				klba = k.jlba
			}
			recs = append(recs, dirRecord(k.isoIdent(joliet), klba, b.dirSize(k, rockRidge, joliet), flagDir, su))
		case len(k.secs) == 0:
			recs = append(recs, dirRecord(k.isoIdent(joliet), 0, 0, 0, su))
		default:
			for i, s := range k.secs {
				flags := byte(0)
				if i < len(k.secs)-1 {
					flags = flagMultiExtent
				}
				recs = append(recs, dirRecord(k.isoIdent(joliet), int(s.Offset/sectorSize), int(s.Size), flags, su))
			}
		}
	}
	return recs
}

// dirSize is the byte size of dir's packed records. Sections are laid out
// by layoutData, but their count (all that matters here) is known before.
func (b *builder) dirSize(dir *node, rockRidge, joliet bool) int {
	saved := make([][]Extent, len(dir.kids))
	for i, k := range dir.kids {
		saved[i] = k.secs
		if !k.dir && len(k.secs) == 0 && len(k.data) > 0 {
			k.secs = make([]Extent, max(k.sections, 1))
		}
	}
	data, _ := packRecords(b.recordsNoSize(dir, rockRidge, joliet))
	for i, k := range dir.kids {
		k.secs = saved[i]
	}
	return len(data)
}

// recordsNoSize is records with zero sizes for "." and "..", to break the
// recursion through dirSize.
func (b *builder) recordsNoSize(dir *node, rockRidge, joliet bool) [][]byte {
	var dot []byte
	if rockRidge {
		dot = append(suSP(), suER()...) // same length for every directory
	}
	recs := [][]byte{dirRecord("\x00", 0, 0, flagDir, dot), dirRecord("\x01", 0, 0, flagDir, nil)}
	for _, k := range dir.kids {
		var su []byte
		if rockRidge {
			su = append(append(suNM(k.name), suPX(0)...), k.su...)
		}
		n := 1
		if !k.dir {
			n = max(len(k.secs), 1)
		}
		for range n {
			recs = append(recs, dirRecord(k.isoIdent(joliet), 0, 0, 0, su))
		}
	}
	return recs
}

func (b *builder) layout(dir *node, rockRidge, joliet bool) {
	n := b.dirSize(dir, rockRidge, joliet) / sectorSize
	if joliet {
		dir.jlba = b.alloc(n)
	} else {
		dir.lba = b.alloc(n)
	}
	for _, k := range dir.kids {
		if k.dir {
			b.layout(k, rockRidge, joliet)
		}
	}
}

func (b *builder) layoutData(dir *node) {
	for _, k := range dir.kids {
		if k.dir {
			b.layoutData(k)
			continue
		}
		if len(k.data) == 0 {
			continue
		}
		parts := max(k.sections, 1)
		per := (len(k.data) + parts - 1) / parts
		per = (per + sectorSize - 1) / sectorSize * sectorSize
		k.secs = nil
		for i := 0; i < parts; i++ {
			lo, hi := min(i*per, len(k.data)), min((i+1)*per, len(k.data))
			lba := b.alloc((hi - lo + sectorSize - 1) / sectorSize)
			b.put(lba, k.data[lo:hi])
			k.secs = append(k.secs, Extent{Offset: int64(lba) * sectorSize, Size: int64(hi - lo)})
			if k.gap && i < parts-1 {
				b.alloc(1)
			}
		}
	}
}

func (b *builder) writeDir(dir, parent *node, rockRidge, joliet bool) {
	data, offs := packRecords(b.records(dir, parent, rockRidge, joliet))
	lba := dir.lba
	if joliet {
		lba = dir.jlba
	}
	b.put(lba, data)
	i := 2
	for _, k := range dir.kids {
		n := 1
		if !k.dir {
			n = max(len(k.secs), 1)
		}
		if !joliet {
			k.recOff = nil
			for j := 0; j < n; j++ {
				k.recOff = append(k.recOff, lba*sectorSize+offs[i+j])
			}
		}
		i += n
		if k.dir {
			b.writeDir(k, dir, rockRidge, joliet)
		}
	}
}

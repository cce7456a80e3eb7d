package erofs

import (
	"encoding/binary"
)

// Compression header (z_erofs_map_header) advise bits.
const (
	adviseCompacted2B      = 0x0001
	adviseExtents          = 0x0001 // full layout only: extent records (erofs-utils 1.9)
	adviseBigPcluster1     = 0x0002
	adviseBigPcluster2     = 0x0004
	adviseInlinePcluster   = 0x0008
	adviseInterlaced       = 0x0010
	adviseFragmentPcluster = 0x0020
)

// lcluster index types.
const (
	lclusterPlain   = 0
	lclusterHead1   = 1
	lclusterNonhead = 2
	lclusterHead2   = 3
)

const (
	liPartialRef = 1 << 15 // full index, head: the pcluster decodes to more than this extent
	liCblkcnt    = 1 << 11 // first non-head lcluster: delta[0] holds the pcluster's block count
	// pclusterMaxSize bounds a compressed physical cluster (Z_EROFS_PCLUSTER_MAX_SIZE).
	pclusterMaxSize = 1 << 20
)

// zheader is the decoded compression header of an inode.
type zheader struct {
	wholeFragment bool   // the whole file is in the packed inode
	fragmentOff   uint64 // its offset there (low 32 bits unless wholeFragment)
	advise        uint16
	alg           [2]Algorithm // HEAD1, HEAD2
	lclusterBits  uint
	idataSize     int64 // ztailpacking: bytes of the inline pcluster
}

// lcluster is one decoded logical cluster index.
type lcluster struct {
	typ        uint8
	clusterofs uint32 // heads: where in the lcluster the new extent starts
	pblk       uint32 // heads: first block of the pcluster
	partial    bool   // heads, full indexes
	cblkcnt    uint32 // non-heads with the CBLKCNT flag: pcluster blocks
	delta0     uint32 // non-heads: distance back to the head (1 for CBLKCNT ones)
}

func (im *Image) zheader(in *Inode) (zheader, int64, error) {
	pos := (in.metaEnd() + 7) &^ 7
	var b [8]byte
	if err := im.readMeta(b[:], pos); err != nil {
		return zheader{}, 0, err
	}
	le := binary.LittleEndian
	var h zheader
	if b[7]&0x80 != 0 {
		h.wholeFragment = true
		h.advise = adviseFragmentPcluster
		h.fragmentOff = le.Uint64(b[:]) &^ (1 << 63)
		return h, pos + 8, nil
	}
	h.advise = le.Uint16(b[4:])
	h.lclusterBits = uint(im.sb.BlockSizeBits) + uint(b[7]&15)
	if in.Layout == CompressedFull && h.advise&adviseExtents != 0 {
		return h, 0, unsupportedErr("extent-record compressed layout (erofs-utils 1.9)")
	}
	h.alg = [2]Algorithm{Algorithm(b[6] & 15), Algorithm(b[6] >> 4)}
	if h.advise&adviseFragmentPcluster != 0 {
		h.fragmentOff = uint64(le.Uint32(b[:]))
	} else if h.advise&adviseInlinePcluster != 0 {
		h.idataSize = int64(le.Uint16(b[2:]))
	}
	if in.Layout == CompressedCompact && (h.advise&adviseBigPcluster1 == 0) != (h.advise&adviseBigPcluster2 == 0) {
		return h, 0, formatErr("compact indexes with big pclusters for one head type only")
	}
	if h.lclusterBits > 16 {
		return h, 0, formatErr("lcluster size 2^%d", h.lclusterBits)
	}
	return h, pos + 8, nil
}

// compressedExtents decodes all lcluster indexes of a compressed inode and turns each head
// (an lcluster where a new pcluster's output starts) into one extent up to the next head.
func (im *Image) compressedExtents(in *Inode) ([]Extent, error) {
	h, ebase, err := im.zheader(in)
	if err != nil {
		return nil, err
	}
	size := int64(in.Size)
	if h.wholeFragment {
		return []Extent{{Length: size, Kind: Fragment, Algorithm: None, PackedOffset: int64(h.fragmentOff)}}, nil
	}
	if !im.sb.HasFragments() && h.advise&adviseFragmentPcluster != 0 {
		return nil, formatErr("fragment pcluster without a packed inode")
	}
	var lcs []lcluster
	var tailPos int64 // where an inline (ztailpacking) pcluster would start: after the index pack of the last lcluster
	if in.Layout == CompressedFull {
		lcs, tailPos, err = im.fullIndexes(in, h, ebase)
	} else {
		lcs, tailPos, err = im.compactIndexes(in, h, ebase)
	}
	if err != nil {
		return nil, err
	}
	bigpcl1 := h.advise&adviseBigPcluster1 != 0
	bigpcl2 := h.advise&adviseBigPcluster2 != 0
	L := int64(1) << h.lclusterBits
	bs := im.sb.BlockSize()

	var heads []int
	for i, lc := range lcs {
		if lc.typ == lclusterNonhead {
			if lc.cblkcnt != 0 && !(bigpcl1 || bigpcl2) {
				return nil, formatErr("lcluster %d: block count without big pclusters", i)
			}
			continue
		}
		if int64(lc.clusterofs) >= L {
			return nil, formatErr("lcluster %d: cluster offset %d >= lcluster size %d", i, lc.clusterofs, L)
		}
		if int64(i)*L+int64(lc.clusterofs) >= size {
			// mkfs.erofs may end the index with a head at EOF: it yields nothing (the
			// kernel never maps offsets past EOF), and the tail extent is the one before.
			continue
		}
		heads = append(heads, i)
	}
	if len(heads) == 0 || heads[0] != 0 || lcs[0].clusterofs != 0 {
		return nil, formatErr("first lcluster is not a head at offset 0")
	}
	out := make([]Extent, 0, len(heads))
	for k, hl := range heads {
		lc := lcs[hl]
		e := Extent{FileOffset: int64(hl)*L + int64(lc.clusterofs), Partial: lc.partial}
		end := size
		if k+1 < len(heads) {
			end = int64(heads[k+1])*L + int64(lcs[heads[k+1]].clusterofs)
		}
		e.Length = end - e.FileOffset
		tail := k == len(heads)-1
		switch lc.typ {
		case lclusterPlain:
			e.Algorithm = None
			e.Interlaced = h.advise&adviseInterlaced != 0
		case lclusterHead1:
			e.Algorithm = h.alg[0]
		case lclusterHead2:
			e.Algorithm = h.alg[1]
		}
		switch {
		case tail && h.idataSize > 0:
			e.Inline = true
			e.PhysOffset, e.PhysLength = tailPos, h.idataSize
			if tailPos%bs+h.idataSize > bs || tailPos+h.idataSize > im.size {
				return nil, formatErr("inline pcluster of %d bytes at %d crosses its block", h.idataSize, tailPos)
			}
		case tail && h.advise&adviseFragmentPcluster != 0:
			off := h.fragmentOff
			if in.Layout == CompressedFull {
				off |= uint64(lc.pblk) << 32 // full indexes keep the high half in the head's block address
			}
			e = Extent{FileOffset: e.FileOffset, Length: e.Length, Kind: Fragment, Algorithm: None, PackedOffset: int64(off)}
		default:
			blocks := int64(1)
			big := (lc.typ == lclusterHead1 && bigpcl1) || (lc.typ != lclusterHead1 && bigpcl2)
			if big && int64(hl+1)*L < size {
				if hl+1 >= len(lcs) {
					return nil, formatErr("lcluster %d: no index after a big pcluster head", hl)
				}
				next := lcs[hl+1]
				if next.typ == lclusterNonhead {
					if next.delta0 != 1 || next.cblkcnt == 0 {
						return nil, formatErr("lcluster %d: big pcluster without its block count", hl+1)
					}
					blocks = int64(next.cblkcnt)
				}
			}
			e.PhysOffset = int64(lc.pblk) << im.sb.BlockSizeBits
			e.PhysLength = blocks * bs
			if e.PhysLength > pclusterMaxSize {
				return nil, formatErr("pcluster of %d bytes at lcluster %d", e.PhysLength, hl)
			}
			if e.PhysOffset+e.PhysLength > im.size {
				return nil, formatErr("pcluster at block %d+%d past the image", lc.pblk, blocks)
			}
		}
		if e.Kind != Fragment {
			if e.Algorithm == None {
				e.Kind = Plain
				if e.Length > e.PhysLength {
					return nil, formatErr("uncompressed pcluster of %d bytes yields %d", e.PhysLength, e.Length)
				}
			} else {
				e.Kind = Compressed
				if im.sb.FeatureIncompat&FeatureIncompatComprCfgs != 0 && im.sb.ComprAlgs&(1<<e.Algorithm) == 0 {
					return nil, formatErr("pcluster algorithm %s not in the superblock's %#x", e.Algorithm, im.sb.ComprAlgs)
				}
				if im.sb.FeatureIncompat&FeatureIncompatComprCfgs == 0 && e.Algorithm != LZ4 {
					return nil, formatErr("pcluster algorithm %s in an LZ4-only image", e.Algorithm)
				}
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// fullIndexes reads one 8-byte index per lcluster.
func (im *Image) fullIndexes(in *Inode, h zheader, ebase int64) ([]lcluster, int64, error) {
	L := int64(1) << h.lclusterBits
	n := (int64(in.Size) + L - 1) / L
	pos := ebase + 8
	if n > (im.size-pos)/8 {
		return nil, 0, formatErr("%d lcluster indexes do not fit in the image", n)
	}
	raw := make([]byte, 8*n)
	if err := im.readMeta(raw, pos); err != nil {
		return nil, 0, err
	}
	le := binary.LittleEndian
	lcs := make([]lcluster, n)
	for i := range lcs {
		r := raw[8*i:]
		adv := le.Uint16(r)
		lc := lcluster{typ: uint8(adv & 3)}
		if lc.typ == lclusterNonhead {
			d0 := le.Uint16(r[4:])
			if d0&liCblkcnt != 0 {
				lc.cblkcnt = uint32(d0 &^ liCblkcnt)
				lc.delta0 = 1
			} else {
				lc.delta0 = uint32(d0)
			}
		} else {
			lc.partial = adv&liPartialRef != 0
			lc.clusterofs = uint32(le.Uint16(r[2:]))
			lc.pblk = le.Uint32(r[4:])
		}
		lcs[i] = lc
	}
	return lcs, pos + 8*n, nil
}

// compactIndexes reads compact indexes: packs of 2 entries in 8 bytes (4B) or 16 entries in
// 32 bytes (2B), each pack ending in the 32-bit block address its heads count from. A few 4B
// packs come first to reach 32-byte alignment, then 2B packs if COMPACTED_2B, then 4B packs.
func (im *Image) compactIndexes(in *Inode, h zheader, ebase int64) ([]lcluster, int64, error) {
	if h.lclusterBits > 14 {
		// 4B entries hold 14 bits of offset and 2 of type.
		return nil, 0, unsupportedErr("compact indexes with lclusters of 2^%d bytes", h.lclusterBits)
	}
	if h.lclusterBits != uint(im.sb.BlockSizeBits) {
		return nil, 0, unsupportedErr("compact indexes with lclusters of 2^%d bytes, blocks of 2^%d", h.lclusterBits, im.sb.BlockSizeBits)
	}
	bs := im.sb.BlockSize()
	total := (int64(in.Size) + bs - 1) / bs
	initial := ((32 - ebase%32) / 4) & 7
	var n2b int64
	if h.advise&adviseCompacted2B != 0 && initial < total {
		n2b = (total - initial) / 16 * 16
	}
	if h.lclusterBits > 12 && n2b > 0 {
		return nil, 0, unsupportedErr("2-byte compact indexes with lclusters of 2^%d bytes", h.lclusterBits)
	}
	n4a := min(initial, total)
	n4b := total - n4a - n2b
	// 4B packs of 2 entries; a trailing odd entry still takes a whole pack.
	length := (n4a+1)/2*8 + n2b*2 + (n4b+1)/2*8
	if length > im.size-ebase {
		return nil, 0, formatErr("%d compact indexes do not fit in the image", total)
	}
	raw := make([]byte, length)
	if err := im.readMeta(raw, ebase); err != nil {
		return nil, 0, err
	}
	lobits := max(h.lclusterBits, 12)
	bigpcl := h.advise&adviseBigPcluster1 != 0
	lcs := make([]lcluster, 0, total)
	var tailPos int64
	decodePacks := func(buf []byte, count int64, vcnt int, packSize int) error {
		encodebits := uint((packSize - 4) * 8 / vcnt)
		for p := int64(0); p*int64(vcnt) < count; p++ {
			pack := buf[p*int64(packSize) : (p+1)*int64(packSize)]
			m := min(int64(vcnt), count-p*int64(vcnt))
			types := make([]uint8, vcnt)
			los := make([]uint32, vcnt)
			for i := 0; i < vcnt; i++ {
				bit := encodebits * uint(i)
				v := binary.LittleEndian.Uint32(pack[bit/8:]) >> (bit & 7)
				los[i] = v & (1<<lobits - 1)
				types[i] = uint8(v>>lobits) & 3
			}
			base := binary.LittleEndian.Uint32(pack[packSize-4:])
			for i := 0; i < int(m); i++ {
				lc, err := compactEntry(types, los, i, vcnt, base, bigpcl)
				if err != nil {
					return err
				}
				lcs = append(lcs, lc)
			}
		}
		return nil
	}
	off := int64(0)
	if err := decodePacks(raw[:(n4a+1)/2*8], n4a, 2, 8); err != nil {
		return nil, 0, err
	}
	off += (n4a + 1) / 2 * 8
	if err := decodePacks(raw[off:off+n2b*2], n2b, 16, 32); err != nil {
		return nil, 0, err
	}
	off += n2b * 2
	if err := decodePacks(raw[off:], n4b, 2, 8); err != nil {
		return nil, 0, err
	}
	// The inline pcluster follows the pack holding the last lcluster, which ends the area.
	tailPos = ebase + length
	return lcs, tailPos, nil
}

// compactEntry decodes entry i of a compact pack. A head's block is the pack's base plus the
// blocks of the pclusters counted before it in the pack (plus one without big pclusters): walking back, a non-head with a
// block count adds that count (and stands for its head), another non-head sends us back to
// its head's first non-head, and a head without a block count in the pack adds one block.
func compactEntry(types []uint8, los []uint32, i, vcnt int, base uint32, bigpcl bool) (lcluster, error) {
	lc := lcluster{typ: types[i]}
	lo := los[i]
	if lc.typ == lclusterNonhead {
		if lo&liCblkcnt != 0 {
			if !bigpcl {
				return lc, formatErr("compact index: block count without big pclusters")
			}
			lc.cblkcnt = lo &^ liCblkcnt
			lc.delta0 = 1
			return lc, nil
		}
		if i+1 != vcnt {
			lc.delta0 = lo
			return lc, nil
		}
		// The pack's last entry stores the distance to the next head instead; its distance
		// back is one more than the previous entry's.
		switch {
		case i == 0 || types[i-1] != lclusterNonhead:
			lc.delta0 = 1
		case los[i-1]&liCblkcnt != 0:
			lc.delta0 = 2
		default:
			lc.delta0 = los[i-1] + 1
		}
		return lc, nil
	}
	lc.clusterofs = lo
	var nblk uint32
	if !bigpcl {
		// Without big pclusters the pack's address is one block before its first pcluster.
		nblk = 1
		for j := i - 1; j >= 0; j-- {
			if types[j] == lclusterNonhead {
				j -= int(los[j])
			}
			if j >= 0 {
				nblk++
			}
		}
	} else {
		for j := i - 1; j >= 0; j-- {
			if types[j] != lclusterNonhead {
				nblk++
				continue
			}
			if los[j]&liCblkcnt != 0 {
				nblk += los[j] &^ liCblkcnt
				j-- // its head is counted by the block count
				continue
			}
			if los[j] <= 1 {
				return lc, formatErr("compact index: non-head distance %d with big pclusters", los[j])
			}
			j -= int(los[j]) - 2 // to the head's first non-head, which holds the count
		}
	}
	lc.pblk = base + nblk
	return lc, nil
}

package xfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehydrator/rehydrator/internal/testtree"
)

// mkfs.xfs -p writes every file in one extent, so a btree-format data fork is made by hand: a
// large file's inode is rewritten to a btree root of level 1 pointing at a leaf block (in free
// space) that lists its blocks as one-block extents, the last 8 of them in reverse physical
// order, as a fragmented file has them. The reader must give the same bytes.
func TestBtreeFork(t *testing.T) {
	tree := t.TempDir()
	if _, err := testtree.Write(tree, testtree.Spec{Seed: 2, Large: 1}); err != nil {
		t.Fatal(err)
	}
	for _, v5 := range []bool{true, false} {
		args := []string{"-d", "agcount=2"}
		if !v5 {
			args = append(args, "-m", "crc=0")
		}
		img := mkfs(t, tree, 320<<20, args...)
		f, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		var file Entry
		f.Walk(func(e Entry) error {
			if e.Mode.IsRegular() {
				file = e
			}
			return nil
		})
		if len(file.Extents) != 1 {
			t.Fatalf("%s in %d extents, want 1", file.Path, len(file.Extents))
		}
		sb := f.Super
		bs := sb.BlockSize
		x := file.Extents[0]
		nblk := (x.Length + bs - 1) / bs
		fsbOf := func(off int64) uint64 { // byte offset -> filesystem block number
			b := off / bs
			ag, agb := b/int64(sb.AGBlocks), b%int64(sb.AGBlocks)
			return uint64(ag)<<sb.agblklog | uint64(agb)
		}
		// Move the file's last 8 blocks to free space in reverse order (zeros at the image's
		// last blocks of AG 0: mkfs leaves them free on a small tree).
		leafOff := int64(sb.AGBlocks-2) * bs
		moved := int64(8)
		rec := func(fileBlock int64, off, count int64) []byte {
			fsb := fsbOf(off)
			l0 := uint64(fileBlock)<<9 | fsb>>43
			l1 := fsb<<21 | uint64(count)
			return be.AppendUint64(be.AppendUint64(nil, l0), l1)
		}
		// The head stays as it is (one record), the tail goes one block a record.
		recs := rec(0, x.Offset, nblk-moved)
		for i := nblk - moved; i < nblk; i++ {
			src := x.Offset + i*bs
			dst := leafOff - (i-(nblk-moved)+1)*bs // reverse order, below the leaf
			copy(img[dst:dst+bs], img[src:src+bs])
			clear(img[src : src+bs])
			recs = append(recs, rec(i, dst, 1)...)
		}
		nrec := 1 + moved
		hdr := 24
		leaf := make([]byte, bs)
		if v5 {
			copy(leaf, "BMA3")
			hdr = 72
			be.PutUint64(leaf[56:], file.Inode)
		} else {
			copy(leaf, "BMAP")
		}
		be.PutUint16(leaf[6:], uint16(nrec))
		be.PutUint64(leaf[8:], ^uint64(0))
		be.PutUint64(leaf[16:], ^uint64(0))
		if hdr+len(recs) > len(leaf) {
			t.Fatalf("%d extents do not fit a leaf", nrec)
		}
		copy(leaf[hdr:], recs)
		copy(img[leafOff:], leaf)
		// The inode: format 3, nextents, and a level-1 root with one pointer.
		n := file.Inode
		ag := n >> (sb.agblklog + sb.inopblog)
		agb := (n >> sb.inopblog) & (1<<sb.agblklog - 1)
		ioff := (int64(ag)*int64(sb.AGBlocks)+int64(agb))*bs + int64(n&(1<<sb.inopblog-1))*sb.InodeSize
		ino := img[ioff : ioff+sb.InodeSize]
		ino[5] = 3
		be.PutUint32(ino[76:], uint32(nrec))
		lit := int64(100)
		if v5 {
			lit = 176
		}
		fork := ino[lit:]
		if ino[82] != 0 {
			fork = ino[lit : lit+int64(ino[82])*8]
		}
		clear(fork)
		maxr := (len(fork) - 4) / 16
		be.PutUint16(fork, 1)
		be.PutUint16(fork[2:], 1)
		be.PutUint64(fork[4+maxr*8:], fsbOf(leafOff))

		f, err = Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(tree, file.Path))
		found := false
		err = f.Walk(func(e Entry) error {
			if e.Path != file.Path {
				return nil
			}
			found = true
			have := make([]byte, e.Size)
			for _, x := range e.Extents {
				copy(have[x.FileOffset:], img[x.Offset:x.Offset+x.Length])
			}
			if !bytes.Equal(have, want) {
				t.Fatalf("v5=%v: content through the btree differs", v5)
			}
			if len(e.Extents) != 1+int(moved) {
				t.Errorf("v5=%v: %d extents, want %d (the contiguous head merged)", v5, len(e.Extents), 1+moved)
			}
			return nil
		})
		if err != nil || !found {
			t.Fatalf("v5=%v: walk: %v (found %v)", v5, err, found)
		}
		// An unwritten record is flagged (its blocks read as zeros, filemap leaves them out).
		last := leafOff + int64(hdr) + (nrec-1)*16
		img[last] |= 0x80
		f2, err := Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		var flagged []bool
		f2.Walk(func(e Entry) error {
			if e.Path == file.Path {
				for _, x := range e.Extents {
					flagged = append(flagged, x.Unwritten)
				}
			}
			return nil
		})
		if len(flagged) != int(nrec) || !flagged[nrec-1] || flagged[0] {
			t.Errorf("v5=%v: unwritten flags %v, want only the last", v5, flagged)
		}
		img[last] &^= 0x80
		// xfs_db reads the same records.
		path := filepath.Join(t.TempDir(), "btree.img")
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("xfs_db", "-r", "-c", fmt.Sprintf("inode %d", file.Inode), "-c", "bmap", path).CombinedOutput()
		if err != nil {
			t.Fatalf("xfs_db: %v\n%s", err, out)
		}
		in, err := f.inode(file.Inode)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := f.forkExtents(in)
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, r := range raw {
			ours = append(ours, fmt.Sprintf("data offset %d startblock %d (%d/%d) count %d flag 0", r.off, r.fsb, r.fsb>>sb.agblklog, r.fsb&(1<<sb.agblklog-1), r.count))
		}
		var lines []string // without the CRC complaints: the hand-made blocks carry none
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(l, "data offset") {
				lines = append(lines, l)
			}
		}
		if got := strings.Join(lines, "\n"); got != strings.Join(ours, "\n") {
			t.Errorf("v5=%v: xfs_db bmap:\n%s\nours:\n%s", v5, got, strings.Join(ours, "\n"))
		}
	}
}

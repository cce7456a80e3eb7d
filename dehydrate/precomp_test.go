package dehydrate

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// gptParts reads the partitions sgdisk writes, by name and byte range.
func TestGPTParts(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 8<<20); err != nil {
		t.Fatal(err)
	}
	run(t, "sgdisk", "-n", "1:2048:4095", "-c", "1:boot", "-n", "2:4096:0", "-c", "2:root", disk)
	f, size, err := openSized(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parts, err := gptParts(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[0] != (part{"boot", 2048 * 512, 2048 * 512}) || parts[1].name != "root" || parts[1].off != 4096*512 {
		t.Fatalf("partitions %+v", parts)
	}
	// No GPT: no partitions, no error (the route falls back to the disk as it is).
	if parts, err := gptParts(bytes.NewReader(make([]byte, 1<<20)), 1<<20); err != nil || parts != nil {
		t.Fatalf("no GPT: %+v, %v", parts, err)
	}
}

// findSquashfs finds a squashfs that mksquashfs made, at a 4-byte aligned offset after other
// bytes (one a chance "hsqs" that is no squashfs), and its size.
func TestFindSquashfs(t *testing.T) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "a"), bytes.Repeat([]byte("live "), 1000), 0o644)
	sq := filepath.Join(dir, "root.squashfs")
	run(t, "mksquashfs", tree, sq, "-noappend", "-quiet", "-no-progress")
	img, err := os.ReadFile(sq)
	if err != nil {
		t.Fatal(err)
	}
	pre := make([]byte, 4<<20+8) // past the first scan chunk
	copy(pre[100:], "hsqs")
	file := append(pre, img...)
	off, size, err := findSquashfs(bytes.NewReader(file), int64(len(file)))
	if err != nil || off != int64(len(pre)) || size <= 96 || size > int64(len(img)) {
		t.Fatalf("found %d bytes at %d (%v), want the squashfs at %d", size, off, err, len(pre))
	}
	if _, size, err := findSquashfs(bytes.NewReader(pre), int64(len(pre))); err != nil || size != 0 {
		t.Fatalf("no squashfs: %d bytes, %v", size, err)
	}
}

// FuzzGPTParts: any disk gives partitions inside it or an error, never a panic.
func FuzzGPTParts(f *testing.F) {
	disk := make([]byte, 64<<10)
	copy(disk[512:], "EFI PART")
	le := binary.LittleEndian
	le.PutUint64(disk[512+72:], 2) // entries at LBA 2
	le.PutUint32(disk[512+80:], 4)
	le.PutUint32(disk[512+84:], 128)
	e := disk[1024:]
	e[0] = 1 // a type GUID that is not zero
	le.PutUint64(e[32:], 34)
	le.PutUint64(e[40:], 100)
	for i, c := range "root" {
		le.PutUint16(e[56+2*i:], uint16(c))
	}
	f.Add(disk)
	f.Add(disk[:1500])
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, err := gptParts(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, p := range parts {
			if p.off < 0 || p.size <= 0 || p.off+p.size > int64(len(b)) {
				t.Fatalf("partition %+v outside the %d-byte disk", p, len(b))
			}
		}
	})
}

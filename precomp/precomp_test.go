package precomp

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// squashfs makes a real zstd squashfs of a generated tree with mksquashfs, as the live ISO's
// root.squashfs is made.
func squashfs(t testing.TB, level int) []byte {
	t.Helper()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Fatalf("mksquashfs is needed (Debian: squashfs-tools): %v", err)
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 40 {
		sub := filepath.Join(tree, fmt.Sprintf("d%d", i%5))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		// Text-like content that compresses, of sizes from a few bytes to several blocks.
		var b strings.Builder
		for size := r.IntN(300<<10) + 10; b.Len() < size; {
			fmt.Fprintf(&b, "line %d of file %d: %x\n", b.Len(), i, r.Uint32()%4096)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d.txt", i)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "root.squashfs")
	args := []string{tree, out, "-comp", "zstd", "-noappend", "-no-progress", "-quiet", "-mkfs-time", "0", "-all-time", "0", "-all-root"}
	if level != 0 {
		args = append(args, "-Xcompression-level", fmt.Sprint(level))
	}
	if o, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v %s", err, o)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func expand(t testing.TB, orig []byte) (*Plan, []byte) {
	t.Helper()
	plan, err := Scan(bytes.NewReader(orig), int64(len(orig)))
	if err != nil {
		t.Fatal(err)
	}
	var x bytes.Buffer
	if err := Expand(&x, bytes.NewReader(orig), int64(len(orig)), plan); err != nil {
		t.Fatal(err)
	}
	if int64(x.Len()) != plan.ExpandedSize(int64(len(orig))) {
		t.Fatalf("expanded %d bytes, ExpandedSize says %d", x.Len(), plan.ExpandedSize(int64(len(orig))))
	}
	return plan, x.Bytes()
}

func TestRoundTripSquashfs(t *testing.T) {
	if !haveCompressor {
		t.Skip("built without cgo: frames cannot be reproduced (the nocgo behaviour is tested by TestNoCgo)")
	}
	for _, level := range []int{0, 3, 19} {
		t.Run(fmt.Sprintf("level%d", level), func(t *testing.T) {
			orig := squashfs(t, level)
			plan, x := expand(t, orig)
			want := level
			if want == 0 {
				want = 15 // mksquashfs's default
			}
			if plan.Level != want {
				t.Errorf("level %d found, want %d", plan.Level, want)
			}
			// Every compressed block must be found: what stays is the superblock, block lists
			// and blocks mksquashfs kept uncompressed.
			if c := plan.Covered(); c < int64(len(orig))*8/10 {
				t.Errorf("frames cover %d of %d bytes", c, len(orig))
			}
			var back bytes.Buffer
			if err := Restore(&back, bytes.NewReader(x)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.Bytes(), orig) {
				t.Fatalf("restored %d bytes differ from the original %d", back.Len(), len(orig))
			}
			t.Logf("%d frames, %d of %d bytes covered, expanded %d bytes", len(plan.Frames), plan.Covered(), len(orig), len(x))
		})
	}
}

func TestNoFrames(t *testing.T) {
	orig := bytes.Repeat([]byte("no zstd here \x28\xb5\x2f\xfd but a magic number"), 1000)
	plan, x := expand(t, orig)
	if len(plan.Frames) != 0 {
		t.Fatalf("found %d frames in plain data", len(plan.Frames))
	}
	var back bytes.Buffer
	if err := Restore(&back, bytes.NewReader(x)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Bytes(), orig) {
		t.Fatal("restored bytes differ")
	}
}

func TestRestoreRefusesBadStreams(t *testing.T) {
	if !haveCompressor {
		t.Skip("built without cgo")
	}
	orig := squashfs(t, 0)
	plan, x := expand(t, orig)
	hdr := len(plan.header())
	wrongLevel := bytes.Clone(x)
	wrongLevel[len(magic)+1] = 1 // the level field: frames then compress to other lengths
	for _, tc := range []struct {
		name   string
		stream []byte
		want   error
	}{
		{"empty", nil, ErrFormat},
		{"bad magic", append([]byte("XXPRECMP"), x[8:]...), ErrFormat},
		{"header cut", x[:hdr-1], ErrFormat},
		{"body cut inside a frame", x[:hdr+int(plan.Frames[0].Offset)+10], ErrFormat},
		{"wrong level", wrongLevel, ErrMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Restore(&bytes.Buffer{}, bytes.NewReader(tc.stream))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Restore = %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzRestore(f *testing.F) {
	f.Add([]byte(magic + "\x01\x0f\x00plain body"))
	f.Add([]byte(magic + "\x01\x0f\x01\x02\x09\x05ab\x28\xb5\x2f\xfd\x20\x05\x29\x00\x00hello"))
	f.Add([]byte(magic + "\x01\x0f\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Restore(&bytes.Buffer{}, bytes.NewReader(data)) // must not panic or hang
	})
}

func FuzzParseFrame(f *testing.F) {
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x05, 0x29, 0x00, 0x00, 'h', 'e', 'l', 'l', 'o'})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x01, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		if fi, ok := parseFrame(data); ok && (fi.length > len(data) || fi.length < 6) {
			t.Fatalf("frame length %d of %d bytes", fi.length, len(data))
		}
		_, _ = Scan(bytes.NewReader(data), int64(len(data)))
	})
}

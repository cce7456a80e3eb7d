package vhdx

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const kib = 1 << 10

// span of guest bytes to fill
type fill struct {
	off, n int64
	random bool // random bytes, else a repeating text pattern
}

// writeRaw makes a sparse raw disk of size bytes holding fills.
func writeRaw(t testing.TB, path string, size int64, fills []fill, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, s := range fills {
		b := make([]byte, s.n)
		for i := range b {
			if s.random {
				b[i] = byte(rng.Uint32())
			} else {
				b[i] = "vhdx guest "[i%11]
			}
		}
		if _, err := f.WriteAt(b, s.off); err != nil {
			t.Fatal(err)
		}
	}
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s (Debian: apt-get install qemu-utils)", name, args, err, out)
	}
}

// qemuVHDX converts raw as osbuild's org.osbuild.qemu stage makes hyperv's
// image (qemu-img convert -O vhdx, dynamic by default) plus extra options.
func qemuVHDX(t testing.TB, raw, out string, opts ...string) {
	args := append([]string{"convert", "-f", "raw", "-O", "vhdx"}, opts...)
	run(t, "qemu-img", append(args, raw, out)...)
}

// compareWriter compares what is written with a file, without holding it.
type compareWriter struct {
	f   *os.File
	off int64
	buf []byte
	err error
}

func (c *compareWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	b := c.buf[:len(p)]
	if n, _ := c.f.ReadAt(b, c.off); n != len(p) || !bytes.Equal(b, p) {
		for i := range p {
			if i >= n || b[i] != p[i] {
				c.err = errors.New("differs")
				c.off += int64(i)
				return i, c.err
			}
		}
	}
	c.off += int64(len(p))
	return len(p), nil
}

func TestRoundTripQemu(t *testing.T) {
	mib := int64(mib)
	cases := []struct {
		name  string
		size  int64
		fills []fill
		opts  []string
	}{
		{"empty", 64 * mib, nil, nil},
		{"sparse", 100 * mib, []fill{{0, 300 * kib, true}, {5*mib + 17, 2 * mib, false}, {40 * mib, 9 * mib, true}, {99*mib + 512, 511 * kib, true}}, nil},
		{"odd-size", 50*mib + 3*512, []fill{{mib, 4 * kib, true}, {50*mib + 512, 1024, true}}, []string{"-o", "subformat=dynamic"}},
		{"full", 24 * mib, []fill{{0, 24 * mib, false}}, []string{"-o", "subformat=dynamic"}},
		{"big-16m-blocks", 1040 * mib, []fill{{0, mib, true}, {700 * mib, 3 * mib, false}, {1039 * mib, mib, true}}, nil},
		{"fixed", 20 * mib, []fill{{3 * mib, 5 * mib, true}}, []string{"-o", "subformat=fixed"}},
		{"4k-log-2m", 30 * mib, []fill{{0, 30 * mib, true}}, []string{"-o", "log_size=2M,block_size=1M"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			raw, vx := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "disk.vhdx")
			writeRaw(t, raw, c.size, c.fills, uint64(i))
			qemuVHDX(t, raw, vx, c.opts...)
			f, err := os.Open(vx)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			img, err := Open(f, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if img.VirtualSize != c.size {
				t.Fatalf("virtual size %d, want %d", img.VirtualSize, c.size)
			}
			// The guest view is the raw disk, by our reading and by qemu-img compare's.
			g := filepath.Join(dir, "guest.raw")
			out, err := os.Create(g)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, img.Guest()); err != nil {
				t.Fatal(err)
			}
			out.Close()
			run(t, "cmp", raw, g)
			run(t, "qemu-img", "compare", "-q", "-f", "raw", "-F", "vhdx", g, vx)

			l, err := img.Layout()
			if err != nil {
				t.Fatal(err)
			}
			// A layout survives JSON (it is a recipe step's params).
			js, err := json.Marshal(l)
			if err != nil {
				t.Fatal(err)
			}
			var l2 Layout
			if err := json.Unmarshal(js, &l2); err != nil {
				t.Fatal(err)
			}
			t.Logf("file %d bytes, %d blocks of %d, layout %d chunks, %d bytes as JSON", st.Size(), len(img.Blocks), img.BlockSize, len(l2.Chunks), len(js))
			if !l2.InOrder() {
				t.Fatal("qemu-img's payload blocks are not in guest order")
			}
			gf, err := os.Open(g)
			if err != nil {
				t.Fatal(err)
			}
			defer gf.Close()
			cw := &compareWriter{f: f}
			if err := Write(cw, gf, &l2); err != nil {
				t.Fatalf("Write: %v (at file offset %#x)", err, cw.off)
			}
			if cw.off != st.Size() {
				t.Fatalf("Write wrote %d bytes, the file has %d", cw.off, st.Size())
			}
			cw = &compareWriter{f: f}
			if err := WriteFrom(cw, gf, &l2); err != nil || cw.off != st.Size() {
				t.Fatalf("WriteFrom: %v at %#x", err, cw.off)
			}
		})
	}
}

// smallVHDX makes a tiny real dynamic VHDX (1 MiB blocks) and its raw disk.
func smallVHDX(t testing.TB) (vx, raw []byte) {
	dir := t.TempDir()
	r, v := filepath.Join(dir, "s.raw"), filepath.Join(dir, "s.vhdx")
	writeRaw(t, r, 3*mib+512, []fill{{0, 700, true}, {2*mib + 5, 1000, false}}, 3)
	qemuVHDX(t, r, v, "-o", "block_size=1M,log_size=1M")
	vx, err := os.ReadFile(v)
	if err != nil {
		t.Fatal(err)
	}
	raw, err = os.ReadFile(r)
	if err != nil {
		t.Fatal(err)
	}
	return vx, raw
}

// TestFilesystem: a real filesystem (ext4 with files, made by mke2fs -d, and
// an empty XFS like the root's: mkfs.xfs -d agcount=2) round-trips.
func TestFilesystem(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	for i := range 40 {
		b := make([]byte, (i+1)*37*kib)
		for j := range b {
			b[j] = byte(j*(i+3)) ^ byte(j>>10)
		}
		os.WriteFile(filepath.Join(src, fmt.Sprintf("file%02d", i)), b, 0o644)
	}
	for _, fs := range []struct{ name, script string }{
		{"ext4", "truncate -s 200M disk.raw && mke2fs -q -t ext4 -d src -U 01234567-89ab-cdef-0123-456789abcdef -E root_owner=0:0 disk.raw"},
		{"xfs", "truncate -s 600M disk.raw && mkfs.xfs -q -d agcount=2 -m uuid=01234567-89ab-cdef-0123-456789abcdef -L root disk.raw"},
	} {
		t.Run(fs.name, func(t *testing.T) {
			os.Remove(filepath.Join(dir, "disk.raw"))
			cmd := exec.Command("sh", "-ec", fs.script)
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s (Debian: apt-get install e2fsprogs xfsprogs)", fs.script, err, out)
			}
			raw, vx := filepath.Join(dir, "disk.raw"), filepath.Join(dir, fs.name+".vhdx")
			qemuVHDX(t, raw, vx)
			f, err := os.Open(vx)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			img, err := Open(f, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			l, err := img.Layout()
			if err != nil {
				t.Fatal(err)
			}
			rf, err := os.Open(raw)
			if err != nil {
				t.Fatal(err)
			}
			defer rf.Close()
			cw := &compareWriter{f: f}
			if err := Write(cw, rf, l); err != nil || cw.off != st.Size() {
				t.Fatalf("Write from the raw disk: %v at file offset %#x of %#x", err, cw.off, st.Size())
			}
		})
	}
}

func TestWriteChecksGuest(t *testing.T) {
	vx, raw := smallVHDX(t)
	img, err := Open(bytes.NewReader(vx), int64(len(vx)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := img.Layout()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Write(&out, bytes.NewReader(raw), l); err != nil || !bytes.Equal(out.Bytes(), vx) {
		t.Fatalf("Write: %v, equal %v", err, bytes.Equal(out.Bytes(), vx))
	}
	// A byte where the layout has no block is refused, as are short and long guests.
	bad := bytes.Clone(raw)
	bad[mib+100] = 1
	if err := Write(io.Discard, bytes.NewReader(bad), l); err == nil {
		t.Fatal("Write accepted guest data no block holds")
	}
	if err := Write(io.Discard, bytes.NewReader(raw[:len(raw)-1]), l); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short guest: %v", err)
	}
	if err := Write(io.Discard, bytes.NewReader(append(bytes.Clone(raw), 0)), l); err == nil {
		t.Fatal("Write accepted a long guest")
	}
}

func TestOpenErrors(t *testing.T) {
	vx, _ := smallVHDX(t)
	mut := func(f func(b []byte)) []byte { b := bytes.Clone(vx); f(b); return b }
	// fix re-checksums a header after a change.
	fix := func(b []byte, off int) {
		binary.LittleEndian.PutUint32(b[off+4:], checksum(b[off:off+headerSize], 4))
	}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"not vhdx", mut(func(b []byte) { b[0] = 'x' }), ErrNotVHDX},
		{"short", vx[:4096], ErrCorrupt},
		{"identifier only", vx[:len(Magic)], ErrCorrupt},
		{"empty", nil, ErrNotVHDX},
		{"both headers bad", mut(func(b []byte) { b[header1Off+9]++; b[header2Off+9]++ }), ErrCorrupt},
		{"log to replay", mut(func(b []byte) {
			for _, off := range []int{header1Off, header2Off} {
				b[off+48] = 1
				fix(b, off)
			}
		}), ErrUnsupported},
		{"region tables bad", mut(func(b []byte) { b[regionTable1Off+20]++; b[regionTable2Off+20]++ }), ErrCorrupt},
		{"truncated", vx[:len(vx)-mib], ErrCorrupt},
	}
	for _, c := range cases {
		_, err := Open(bytes.NewReader(c.b), int64(len(c.b)))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	// One damaged header: the other is used.
	b := mut(func(b []byte) { b[header2Off+9]++ })
	if _, err := Open(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("one damaged header: %v", err)
	}
}

func TestSniff(t *testing.T) {
	vx, _ := smallVHDX(t)
	sniff := func(b []byte) bool { return Sniff(bytes.NewReader(b), int64(len(b))) }
	if !sniff(vx) || !sniff(vx[:len(Magic)]) || sniff([]byte("conectix")) || sniff([]byte("vhdxfil")) || sniff(nil) {
		t.Fatal("Sniff")
	}
}

// BenchmarkWrite writes a dynamic VHDX of a 64 MiB guest (half its blocks
// present) from the guest view; BenchmarkCopyGuest copies the same guest
// bytes (MB/s count guest bytes in both).
func BenchmarkWrite(b *testing.B) {
	vx, guest := benchImage(b)
	img, err := Open(bytes.NewReader(vx), int64(len(vx)))
	if err != nil {
		b.Fatal(err)
	}
	l, err := img.Layout()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(guest)))
	for b.Loop() {
		if err := Write(sink{}, onlyReader{bytes.NewReader(guest)}, l); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCopyGuest(b *testing.B) {
	_, guest := benchImage(b)
	b.SetBytes(int64(len(guest)))
	buf := make([]byte, 64<<10)
	for b.Loop() {
		io.CopyBuffer(sink{}, onlyReader{bytes.NewReader(guest)}, buf)
	}
}

// sink and onlyReader keep io.Copy from short-cutting (io.Discard, WriterTo).
type sink struct{}

func (sink) Write(p []byte) (int, error) { return len(p), nil }

type onlyReader struct{ io.Reader }

func benchImage(b *testing.B) (vx, guest []byte) {
	dir := b.TempDir()
	raw, v := filepath.Join(dir, "b.raw"), filepath.Join(dir, "b.vhdx")
	var fills []fill
	for off := int64(0); off < 64*mib; off += 16 * mib {
		fills = append(fills, fill{off, 8 * mib, true})
	}
	writeRaw(b, raw, 64*mib, fills, 1)
	qemuVHDX(b, raw, v)
	vx, _ = os.ReadFile(v)
	guest, _ = os.ReadFile(raw)
	return vx, guest
}

package reflate

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func checkGzip(t *testing.T, name string, file, data []byte, zlib bool) int {
	t.Helper()
	var plain bytes.Buffer
	split := SplitGzip
	if zlib {
		split = SplitZlib
	}
	recon, n, err := split(bytes.NewReader(file), &plain)
	if err != nil {
		t.Fatalf("%s: split: %v", name, err)
	}
	if n != int64(len(file)) || !bytes.Equal(plain.Bytes(), data) {
		t.Fatalf("%s: split read %d of %d bytes, plain %d of %d", name, n, len(file), plain.Len(), len(data))
	}
	var out bytes.Buffer
	if err := RebuildGzip(&out, &plain, recon); err != nil {
		t.Fatalf("%s: rebuild: %v", name, err)
	}
	if !bytes.Equal(out.Bytes(), file) {
		t.Fatalf("%s: rebuilt file differs", name)
	}
	return len(recon)
}

func tool(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out
}

// TestGzipFiles: whole gzip files from GNU gzip (with and without -n: the name and time in
// the header), pigz, busybox gzip, Go's compress/gzip with FEXTRA and FCOMMENT, a header
// with every flag, several members, trailing bytes, and zlib streams.
func TestGzipFiles(t *testing.T) {
	in := inputs(t)
	data := in["text"]
	dir := t.TempDir()
	f := filepath.Join(dir, "text.txt")
	os.WriteFile(f, data, 0o644)
	files := map[string][]byte{}
	for _, l := range []string{"-1", "-6", "-9"} {
		files["gzip-n"+l] = tool(t, data, "gzip", "-n", "-c", l)
		files["gzip"+l] = tool(t, nil, "gzip", "-c", l, f) // FNAME and MTIME
	}
	files["pigz"] = tool(t, data, "pigz", "-c", "-6", "-b", "32")
	files["busybox"] = tool(t, data, "busybox", "gzip", "-c", "-9")
	var gb bytes.Buffer
	gw, _ := gzip.NewWriterLevel(&gb, 5)
	gw.Extra, gw.Name, gw.Comment = []byte("ex"), "name", "a comment"
	gw.Write(data)
	gw.Close()
	files["go-extra-comment"] = gb.Bytes()
	// every flag, FHCRC too, around a zlib -6 stream
	hdr := []byte{0x1f, 0x8b, 8, 2 | 4 | 8 | 16, 1, 2, 3, 4, 0, 3, 3, 0, 'x', 'y', 'z'}
	hdr = append(hdr, "file\x00comment\x00"...)
	hdr = binary.LittleEndian.AppendUint16(hdr, uint16(crc32.ChecksumIEEE(hdr)))
	all := append(append([]byte{}, hdr...), pyZlib(t, data, 6)...)
	all = binary.LittleEndian.AppendUint32(all, crc32.ChecksumIEEE(data))
	all = binary.LittleEndian.AppendUint32(all, uint32(len(data)))
	files["all-flags"] = all
	for name, file := range files {
		r := checkGzip(t, name, file, data, false)
		t.Logf("%-18s %8d -> %8d recon %5d (%.3f%%)", name, len(data), len(file), r, 100*float64(r)/float64(len(file)))
	}
	// several members (cat a.gz b.gz), an empty one among them
	multi := append(append(append([]byte{}, files["gzip-9"]...), tool(t, nil, "gzip", "-n", "-c")...), files["pigz"]...)
	checkGzip(t, "multi", multi, append(append([]byte{}, data...), data...), false)
	// trailing bytes: zeros (tape padding), text, a lone 0x1f
	for _, tr := range []string{"\x00\x00\x00\x00", "trailing garbage", "\x1f"} {
		checkGzip(t, "trailing", append(append([]byte{}, files["gzip-n-6"]...), tr...), data, false)
	}
	for _, l := range []string{"1", "6", "9"} {
		z := tool(t, data, "python3", "-c", "import sys,zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read(), "+l+"))")
		checkGzip(t, "zlib-"+l, z, data, true)
	}
	// refused: not gzip, a damaged trailer, a truncated member, too much trailing data
	bad := bytes.Clone(files["gzip-n-6"])
	bad[len(bad)-5] ^= 1
	for name, b := range map[string][]byte{
		"empty":     {},
		"text":      []byte("hello"),
		"bad crc":   bad,
		"truncated": files["gzip-n-6"][:len(files["gzip-n-6"])-3],
		"trailing":  append(append([]byte{}, files["gzip-n-1"]...), make([]byte, maxTrailing+1)...),
	} {
		if _, _, err := SplitGzip(bytes.NewReader(b), &bytes.Buffer{}); err == nil {
			t.Errorf("%s: no error", name)
		} else if name == "empty" && !errors.Is(err, ErrNotGzip) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

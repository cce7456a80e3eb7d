package streammeta

import (
	"archive/zip"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/ulikunitz/xz"
)

// ErrChecksum marks a file whose SHA-256 is not the one the stream metadata names.
var ErrChecksum = errors.New("sha256 mismatch")

// ErrZipMembers marks a shipped .zip that does not hold exactly one file.
var ErrZipMembers = errors.New("zip does not hold exactly one file")

// Decompress copies the shipped file at path into w, decompressed (.zip: its one member), and checks both the shipped
// SHA-256 and the uncompressed SHA-256 while it streams. It returns the uncompressed size.
// xz is decoded by xz(1) when it is on PATH (several times faster than the Go decoder), else in Go.
func Decompress(ctx context.Context, a Artifact, path string, w io.Writer) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	shipped := sha256.New()
	in := io.TeeReader(bufio.NewReaderSize(f, 1<<20), shipped)
	out := sha256.New()
	var n int64
	switch a.Compression {
	case "":
		n, err = io.Copy(io.MultiWriter(w, out), in)
	case "gzip":
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(in); err == nil {
			zr.Multistream(true)
			n, err = io.Copy(io.MultiWriter(w, out), zr)
		}
	case "xz":
		n, err = decodeXZ(ctx, in, io.MultiWriter(w, out))
	case "zip":
		// A zip's directory is at its end: the shipped checksum is taken in a first pass and the
		// member is read through the file's ReaderAt in the second.
		if _, err = io.Copy(io.Discard, in); err == nil {
			n, err = unzipOne(f, io.MultiWriter(w, out))
		}
	default:
		err = fmt.Errorf("unknown compression %q", a.Compression)
	}
	if err != nil {
		return n, fmt.Errorf("%s: decompress %s: %w", a.ID(), path, err)
	}
	// Drain whatever trails the compressed stream so the shipped checksum covers the whole file.
	if _, err := io.Copy(io.Discard, in); err != nil {
		return n, fmt.Errorf("%s: read %s: %w", a.ID(), path, err)
	}
	if got := hex.EncodeToString(shipped.Sum(nil)); got != a.SHA256 {
		return n, fmt.Errorf("%s: %s: %w: file has %s, stream metadata says %s (re-download the file)", a.ID(), path, ErrChecksum, got, a.SHA256)
	}
	if got := hex.EncodeToString(out.Sum(nil)); got != a.UncompressedSHA256 {
		return n, fmt.Errorf("%s: %s: %w after decompression: got %s, stream metadata says uncompressed-sha256 %s", a.ID(), path, ErrChecksum, got, a.UncompressedSHA256)
	}
	return n, nil
}

// unzipOne copies the one file of the zip archive f into w; archive/zip checks its CRC-32.
func unzipOne(f *os.File, w io.Writer) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	zr, err := zip.NewReader(f, st.Size())
	if err != nil {
		return 0, err
	}
	if len(zr.File) != 1 || zr.File[0].FileInfo().IsDir() {
		names := make([]string, 0, len(zr.File))
		for _, m := range zr.File {
			names = append(names, m.Name)
		}
		return 0, fmt.Errorf("%w: it has %d entries (%s); rehydrator only unpacks a zip of one file", ErrZipMembers, len(zr.File), strings.Join(names, ", "))
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		return 0, fmt.Errorf("zip member %s: %w", zr.File[0].Name, err)
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, fmt.Errorf("zip member %s: %w", zr.File[0].Name, err)
	}
	return n, nil
}

func decodeXZ(ctx context.Context, in io.Reader, w io.Writer) (int64, error) {
	if bin, err := exec.LookPath("xz"); err == nil {
		cmd := exec.CommandContext(ctx, bin, "-dc")
		cmd.Stdin = in
		cw := &countWriter{w: w}
		cmd.Stdout = cw
		var stderr limitedBuffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return cw.n, fmt.Errorf("xz -dc: %v: %s", err, stderr.String())
		}
		return cw.n, nil
	}
	zr, err := xz.NewReader(in)
	if err != nil {
		return 0, err
	}
	return io.Copy(w, zr)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// limitedBuffer keeps the first 4 KiB written to it (a tool's stderr, for error messages).
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b = append(l.b, p[:room]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

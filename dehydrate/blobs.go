package dehydrate

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/qcow2"
)

// blob is a file a candidate adds to the image.
type blob struct {
	path, digest string
	size         int64  // bytes
	packed       int64  // bytes compressed: an estimate of its layer's size (0: not measured)
	role         string // "baseline", "delta" or "whole" (rehydrate.Blob.Role)
}

// writeDelta computes the delta from base to target with both engines — the searching one,
// which follows moved content, and the aligned one, whose result is bounded by the bytes that
// differ in place — and keeps the smaller.
func writeDelta(base io.ReaderAt, baseSize int64, target io.ReaderAt, targetSize int64, blobDir string, opt delta.Options) (*blob, error) {
	var best *blob
	engines := []func(w io.Writer) error{
		func(w io.Writer) error {
			_, err := delta.Compute(base, baseSize, target, targetSize, w, opt)
			return err
		},
		func(w io.Writer) error {
			_, err := delta.ComputeAligned(base, baseSize, target, targetSize, w)
			return err
		},
	}
	for i, compute := range engines {
		if i > 0 && best.size <= skipSecondBelow {
			break // the first engine's delta is already tiny: the other cannot matter
		}
		b, err := writeBlob(blobDir, compute)
		if err != nil {
			return nil, fmt.Errorf("delta: %w", err)
		}
		if best == nil || b.size < best.size {
			if best != nil && best.path != b.path {
				os.Remove(best.path)
			}
			best = b
		} else if b.path != best.path {
			os.Remove(b.path)
		}
	}
	packed, err := compressedSize(best.path)
	if err != nil {
		return nil, err
	}
	best.packed, best.role = packed, "delta"
	return best, nil
}

// skipSecondBelow is the delta size under which the second engine is not run.
const skipSecondBelow = 64 << 10

// writeBlob stores what write produces as a blob named by its SHA-256.
func writeBlob(blobDir string, write func(io.Writer) error) (*blob, error) {
	f, err := os.CreateTemp(blobDir, ".delta-*")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return nil, err
	}
	hexd := hex.EncodeToString(h.Sum(nil))
	path := filepath.Join(blobDir, hexd)
	if err := os.Rename(f.Name(), path); err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	return &blob{path: path, digest: "sha256:" + hexd, size: st.Size()}, nil
}

// compressedSize estimates what a blob costs in a compressed layer.
func compressedSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n countingWriter
	zw, err := zstd.NewWriter(&n, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(zw, f); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return int64(n), nil
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// isQcow2 says whether the file at path claims to be a qcow2 image.
func isQcow2(path string) bool {
	f, size, err := openSized(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return qcow2.Sniff(f, size)
}

// dataBlob stores b as a blob of the delta role, with its compressed size measured: the small
// side data of a route (reconstruction data, a map, a plan).
func dataBlob(blobDir string, b []byte) (*blob, error) {
	bl, err := writeBlob(blobDir, func(w io.Writer) error { _, err := w.Write(b); return err })
	if err != nil {
		return nil, err
	}
	if bl.packed, err = compressedSize(bl.path); err != nil {
		return nil, err
	}
	bl.role = "delta"
	return bl, nil
}

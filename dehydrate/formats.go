package dehydrate

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/sparsetar"
	"github.com/rehydrator/rehydrator/vhd"
	"github.com/rehydrator/rehydrator/vmdk"
)

// diskFormat is a shipped disk whose format has a recipe step: its guest view, and the steps
// that write the format around a guest view.
type diskFormat struct {
	name      string // "vmdk", "ova", "vhd", "gnu-sparse-tar"
	guest     io.ReaderAt
	guestSize int64
	steps     []rehydrate.Step
}

// errNoEncoder marks a format this build recognises but cannot re-encode.
var errNoEncoder = errors.New("stored whole")

// canEncodeVMDK reports whether this build has vmdk-encode's zlib (a variable for tests).
var canEncodeVMDK = vmdk.CanEncode

// maxOVAFile bounds the OVA members other than the disk, which the recipe carries inline.
const maxOVAFile = 1 << 20

// detectFormat recognises a streamOptimized VMDK, an OVA holding one, a fixed VHD and a GNU
// sparse tar; nil, nil for anything else. An error wrapping errNoEncoder says why a
// recognised file cannot take its format's recipe (the caller stores it whole).
func detectFormat(f io.ReaderAt, size int64) (*diskFormat, error) {
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil {
		return nil, nil
	}
	if string(magic[:]) == "KDMV" {
		return vmdkFormat(f, size)
	}
	if fx, err := vhd.OpenFixed(f, size); err == nil {
		return &diskFormat{name: "vhd", guest: fx.Guest(f), guestSize: fx.DataSize, steps: []rehydrate.Step{step(rehydrate.OpVHDFixed, fx)}}, nil
	}
	if o, err := vmdk.ReadOVA(f, size); err == nil {
		return ovaFormat(f, o)
	}
	if a, err := sparsetar.Open(f, size); err == nil {
		return &diskFormat{name: "gnu-sparse-tar", guest: a.File(f), guestSize: a.RealSize, steps: []rehydrate.Step{step(rehydrate.OpSparseTar, &a.Layout)}}, nil
	}
	return nil, nil
}

func vmdkFormat(f io.ReaderAt, size int64) (*diskFormat, error) {
	img, err := vmdk.Open(f, size)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoEncoder, err)
	}
	p, err := img.Params()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoEncoder, err)
	}
	if p.Layout != vmdk.LayoutQemu {
		return nil, fmt.Errorf("%w: vmdk-encode cannot reproduce it: %s", errNoEncoder, p.LayoutNote)
	}
	if err := canEncodeVMDK(); err != nil {
		return nil, fmt.Errorf("%w: vmdk-encode needs a cgo build of rehydrator (CGO_ENABLED=1 with zlib1g-dev, see vmdk/doc.go), this one has none", errNoEncoder)
	}
	p.Deflate = vmdk.EncoderDeflate() // what reproduces it, recorded for the reader
	return &diskFormat{name: "vmdk", guest: img, guestSize: img.Size(), steps: []rehydrate.Step{step(rehydrate.OpVMDKEncode, p)}}, nil
}

func ovaFormat(f io.ReaderAt, o *vmdk.OVA) (*diskFormat, error) {
	op := &rehydrate.OVAParams{Archive: *o, Files: map[string][]byte{}}
	var disk *vmdk.OVAMember
	for i := range o.Members {
		m := &o.Members[i]
		var magic [4]byte
		if m.Size >= 4 {
			if _, err := m.Open(f).ReadAt(magic[:], 0); err == nil && string(magic[:]) == "KDMV" {
				disk = m
				break
			}
		}
	}
	if disk == nil {
		return nil, nil // a tar without a VMDK: not an OVA
	}
	for i := range o.Members {
		m := &o.Members[i]
		if m == disk {
			continue
		}
		if m.Size > maxOVAFile {
			return nil, fmt.Errorf("%w: ova member %q has %d bytes, more than the %d a recipe carries inline", errNoEncoder, m.Name, m.Size, maxOVAFile)
		}
		b := make([]byte, m.Size)
		if _, err := m.Open(f).ReadAt(b, 0); err != nil && !(err == io.EOF && m.Size == 0) {
			return nil, fmt.Errorf("ova member %q: %w", m.Name, err)
		}
		if _, dup := op.Files[m.Name]; dup {
			return nil, fmt.Errorf("%w: ova has two members named %q", errNoEncoder, m.Name)
		}
		op.Files[m.Name] = b
	}
	op.Disk = disk.Name
	d, err := vmdkFormat(disk.Open(f), disk.Size)
	if err != nil {
		return nil, err
	}
	d.name = "ova"
	d.steps = append(d.steps, step(rehydrate.OpOVA, op))
	return d, nil
}

func step(op string, params any) rehydrate.Step {
	b, err := json.Marshal(params)
	if err != nil {
		panic(err) // params are plain structs
	}
	return rehydrate.Step{Op: op, Params: b}
}

// formatCandidate plans target as baseline guest view -> patch -> the format's steps, with a
// last patch for whatever bytes the format steps do not reproduce. It returns nil when
// target has no such format; whole is set when it has one this build cannot re-encode
// (note says why), so no plain delta of its compressed bytes is worth computing either.
func formatCandidate(ctx context.Context, basePath, baseDigest, targetPath, targetSHA, blobDir string, opt delta.Options) (c *candidate, whole bool, note string, err error) {
	base, bsize, err := openSized(basePath)
	if err != nil {
		return nil, false, "", err
	}
	defer base.Close()
	target, tsize, err := openSized(targetPath)
	if err != nil {
		return nil, false, "", err
	}
	defer target.Close()
	df, err := detectFormat(target, tsize)
	if errors.Is(err, errNoEncoder) {
		return nil, true, err.Error(), nil
	}
	if err != nil || df == nil {
		return nil, false, "", err
	}
	img, err := qcow2.Open(base, bsize)
	if err != nil {
		return nil, false, "", fmt.Errorf("baseline: %w", err)
	}
	gd, err := writeDelta(img, img.Size(), df.guest, df.guestSize, blobDir, opt)
	if errors.Is(err, vmdk.ErrCorrupt) || errors.Is(err, sparsetar.ErrCorrupt) {
		// The shipped file is what stream.json promises, but its insides contradict
		// themselves: keep it as it is.
		return nil, true, fmt.Sprintf("cannot read its %s guest view: %v", df.name, err), nil
	}
	if err != nil {
		return nil, false, "", fmt.Errorf("%s guest view: %w", df.name, err)
	}
	c = gd
	c.decoded, c.format = true, df.name
	c.tail = df.steps
	for _, s := range df.steps {
		c.params += int64(len(s.Params))
	}

	// What do the steps make? Hash it first (usually the very file); only where it differs
	// is it written out, so that a last delta can carry the difference.
	steps := c.steps([]rehydrate.Step{{Op: rehydrate.OpBlob, Blob: baseDigest}})
	blobs := LocalBlobs{baseDigest: basePath, gd.digest: gd.path}
	h := sha256.New()
	_, err = rehydrate.Run(ctx, blobs, nil, steps, h)
	if err != nil {
		os.Remove(gd.path)
		return nil, true, fmt.Sprintf("the %s steps failed: %v", df.name, err), nil
	}
	if hex.EncodeToString(h.Sum(nil)) != targetSHA {
		tmp, err := os.CreateTemp(blobDir, ".candidate-*")
		if err != nil {
			return nil, false, "", err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		sw := &sparseWriter{f: tmp}
		bw := bufio.NewWriterSize(sw, 1<<20)
		if _, err = rehydrate.Run(ctx, blobs, nil, steps, bw); err == nil {
			err = bw.Flush()
		}
		if err == nil {
			err = tmp.Truncate(sw.off)
		}
		if err != nil {
			return nil, false, "", fmt.Errorf("%s steps: %w", df.name, err)
		}
		n := sw.off
		left, err := writeDelta(tmp, n, target, tsize, blobDir, opt)
		if err != nil {
			return nil, false, "", fmt.Errorf("%s leftover: %w", df.name, err)
		}
		c.more = append(c.more, left)
		c.tail = append(c.tail, rehydrate.Step{Op: rehydrate.OpPatch, Blob: left.digest})
		note = fmt.Sprintf("%d bytes of %s differ after re-encoding: a last delta of %d bytes carries them", countDiff(tmp, target), df.name, left.size)
	}
	return c, false, note, nil
}

// sparseWriter writes to f, leaving holes where whole 64 KiB blocks are zero (the writes come
// in 1 MiB chunks from a bufio.Writer): the VHD of a 3 GiB disk is mostly zeros.
type sparseWriter struct {
	f   *os.File
	off int64
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	const block = 64 << 10
	for i := 0; i < len(p); i += block {
		b := p[i:min(i+block, len(p))]
		if !allZero(b) {
			if _, err := w.f.WriteAt(b, w.off+int64(i)); err != nil {
				return i, err
			}
		}
	}
	w.off += int64(len(p))
	return len(p), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// countDiff counts the bytes that differ between two files (for the build's messages).
func countDiff(a, b io.ReaderAt) int64 {
	ra, rb := bufio.NewReaderSize(io.NewSectionReader(a, 0, 1<<62), 1<<20), bufio.NewReaderSize(io.NewSectionReader(b, 0, 1<<62), 1<<20)
	x, y := make([]byte, 1<<16), make([]byte, 1<<16)
	var diff int64
	for {
		n, errA := io.ReadFull(ra, x)
		m, errB := io.ReadFull(rb, y)
		k := min(n, m)
		if !bytes.Equal(x[:k], y[:k]) {
			for i := range k {
				if x[i] != y[i] {
					diff++
				}
			}
		}
		diff += int64(max(n, m) - k)
		if errA != nil || errB != nil {
			if errA == nil || errB == nil {
				// one continues: count its rest
				rest := ra
				if errA != nil {
					rest = rb
				}
				k, _ := io.Copy(io.Discard, rest)
				diff += k
			}
			return diff
		}
	}
}

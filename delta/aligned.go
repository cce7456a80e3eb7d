package delta

import (
	"bytes"
	"fmt"
	"io"
)

// minAlignedCopy is the shortest equal run ComputeAligned copies inside a changed chunk; shorter
// ones cost more as a COPY command than as literal bytes.
const minAlignedCopy = 16

// ComputeAligned writes a delta that copies every byte the target shares with the base at the
// same offset and carries only the differing bytes (and any tail past the base) as literals. It
// finds nothing that moved, but its work and its output are bounded by the bytes that differ
// in place: disk images whose layout did not change (a raw disk against the guest view of its
// qcow2 sibling) get a delta of their edits whatever their zero regions look like. Like
// Compute, every COPY reads the base forward.
func ComputeAligned(base io.ReaderAt, baseSize int64, target io.ReaderAt, targetSize int64, w io.Writer) (Stats, error) {
	st := Stats{TargetSize: targetSize}
	if baseSize < 0 || targetSize < 0 {
		return st, fmt.Errorf("delta: negative size (base %d, target %d)", baseSize, targetSize)
	}
	em, err := newEmitter(w, newWindow(target, targetSize, "target", auxBuf), &st)
	if err != nil {
		return st, err
	}
	common := min(baseSize, targetSize)
	bb := make([]byte, mainBuf)
	tb := make([]byte, mainBuf)
	for off := int64(0); off < common; off += mainBuf {
		n := int(min(mainBuf, common-off))
		if err := readFullAt(base, bb[:n], off, "base"); err != nil {
			return st, err
		}
		if err := readFullAt(target, tb[:n], off, "target"); err != nil {
			return st, err
		}
		if bytes.Equal(bb[:n], tb[:n]) {
			if err := em.copy(off, int64(n)); err != nil {
				return st, err
			}
			continue
		}
		if err := alignedChunk(em, bb[:n], tb[:n], off); err != nil {
			return st, err
		}
	}
	if err := em.literal(common, targetSize); err != nil {
		return st, err
	}
	if err := em.end(); err != nil {
		return st, err
	}
	st.DeltaSize = em.cw.n
	return st, nil
}

// alignedChunk emits one chunk that differs somewhere: equal runs of at least minAlignedCopy
// bytes as copies, everything else as literals.
func alignedChunk(em *emitter, b, t []byte, off int64) error {
	n := len(b)
	i := 0
	for i < n {
		j := i
		for j < n && b[j] == t[j] {
			j++
		}
		if j-i >= minAlignedCopy || i == 0 || j == n {
			if err := em.copy(off+int64(i), int64(j-i)); err != nil {
				return err
			}
		} else if err := em.literal(off+int64(i), off+int64(j)); err != nil {
			return err
		}
		k := j
		for k < n && b[k] != t[k] {
			k++
		}
		if err := em.literal(off+int64(j), off+int64(k)); err != nil {
			return err
		}
		i = k
	}
	return nil
}

func readFullAt(r io.ReaderAt, p []byte, off int64, what string) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("delta: reading %s at %d: %w", what, off, err)
}

package rehydrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/rehydrator/rehydrator/delta"
	"github.com/rehydrator/rehydrator/precomp"
	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/x86filter"
)

// BlobSource gives the content of stored blobs. ociimage implements it for registries, OCI
// layouts, docker-archives and the unpacked in-container directory.
type BlobSource interface {
	OpenBlob(ctx context.Context, digest string) (io.ReadCloser, error)
}

// BlobPather is implemented by sources whose blobs are plain local files, which gives steps that
// need random access (qcow2-decode) their input without copying it first.
type BlobPather interface {
	BlobPath(digest string) (string, bool)
}

// ErrChecksum marks rehydrated bytes that are not the artifact the recipe promises.
var ErrChecksum = errors.New("sha256 mismatch")

// Engine runs recipes. Rehydrate may be called from several goroutines at once: they share the
// engine's materialised intermediate files (each made once). Close removes those files; call it
// when no Rehydrate is running.
type Engine struct {
	recipe  *Recipe
	blobs   BlobSource
	tempDir string

	mu      sync.Mutex
	spooled map[string]*spoolEntry // materialised intermediate results, by pipeline key
}

// spoolEntry is one materialised intermediate result; done is closed once f (or err) is set.
type spoolEntry struct {
	done chan struct{}
	f    *os.File
	err  error
}

// NewEngine returns an engine that reads blobs from src and keeps the intermediate files that
// random-access steps need in tempDir ("" for the system default).
func NewEngine(r *Recipe, src BlobSource, tempDir string) *Engine {
	return &Engine{recipe: r, blobs: src, tempDir: tempDir, spooled: map[string]*spoolEntry{}}
}

// Close removes the engine's temporary files.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var first error
	for k, s := range e.spooled {
		select {
		case <-s.done:
		default:
			continue // still being written by a running Rehydrate, which owns it until done
		}
		if s.f != nil {
			s.f.Close()
			if err := os.Remove(s.f.Name()); err != nil && first == nil {
				first = err
			}
		}
		delete(e.spooled, k)
	}
	return first
}

// value is the output of a step: a stream, random access, or both.
type value struct {
	key  string        // identity of the pipeline that produced it (for caching materialised files)
	r    io.ReadCloser // sequential stream from offset 0; nil when only ra is set
	ra   io.ReaderAt
	size int64 // -1 when unknown
}

func (v *value) close() {
	if v.r != nil {
		v.r.Close()
	}
}

// stream returns the value as a sequential reader.
func (v *value) stream() io.ReadCloser {
	if v.r != nil {
		return v.r
	}
	return io.NopCloser(io.NewSectionReader(v.ra, 0, v.size))
}

// Rehydrate writes artifact id to w, checking its size and SHA-256 while it streams. The last
// chunk is held back until the check has passed, so a failed rehydration never hands out a
// complete-looking file. progress, if not nil, is called with the bytes written so far.
func (e *Engine) Rehydrate(ctx context.Context, id string, w io.Writer, progress func(written int64)) error {
	a, ok := e.recipe.Artifact(id)
	if !ok {
		return fmt.Errorf("rehydrate %s: no such artifact in the recipe", id)
	}
	v, err := e.open(ctx, a, 0)
	if err != nil {
		return fmt.Errorf("rehydrate %s: %w", a.Name, err)
	}
	r := v.stream()
	defer r.Close()
	if err := verifiedCopy(ctx, w, r, a.Size, a.SHA256, progress); err != nil {
		return fmt.Errorf("rehydrate %s: %w", a.Name, err)
	}
	return nil
}

const copyChunk = 1 << 20

// verifiedCopy copies r to w, holding back the last chunk until size and SHA-256 are checked.
func verifiedCopy(ctx context.Context, w io.Writer, r io.Reader, size int64, wantHex string, progress func(int64)) error {
	h := sha256.New()
	bufs := [2][]byte{make([]byte, copyChunk), make([]byte, copyChunk)}
	var pending []byte // read and hashed, not yet written
	var total, written int64
	cur := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(r, bufs[cur])
		if n > 0 {
			if pending != nil {
				if _, werr := w.Write(pending); werr != nil {
					return fmt.Errorf("write: %w", werr)
				}
				written += int64(len(pending))
				if progress != nil {
					progress(written)
				}
			}
			h.Write(bufs[cur][:n])
			total += int64(n)
			if total > size {
				return fmt.Errorf("%w: output is longer than the expected %d bytes", ErrChecksum, size)
			}
			pending = bufs[cur][:n]
			cur ^= 1
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if total != size {
		return fmt.Errorf("%w: output has %d bytes, expected %d", ErrChecksum, total, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantHex {
		return fmt.Errorf("%w: output has sha256 %s, expected %s", ErrChecksum, got, wantHex)
	}
	if pending != nil {
		if _, err := w.Write(pending); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	if progress != nil {
		progress(total)
	}
	return nil
}

// open runs the artifact's steps and returns the final value (not yet verified).
func (e *Engine) open(ctx context.Context, a *Artifact, depth int) (*value, error) {
	if depth > len(e.recipe.Artifacts) {
		return nil, fmt.Errorf("%w: refs nest deeper than the artifact count", ErrBadRecipe)
	}
	var v *value
	for i, s := range a.Steps {
		var err error
		if i == 0 {
			v, err = e.source(ctx, s, depth)
		} else {
			v, err = e.apply(ctx, s, v)
		}
		if err != nil {
			if v != nil {
				v.close()
			}
			return nil, fmt.Errorf("step %d %s: %w", i, s, err)
		}
	}
	return v, nil
}

func (e *Engine) source(ctx context.Context, s Step, depth int) (*value, error) {
	switch s.Op {
	case OpBlob:
		return e.openBlob(ctx, s.Blob)
	case OpRef:
		ref, ok := e.recipe.Artifact(s.Ref)
		if !ok {
			return nil, fmt.Errorf("%w: unknown artifact %q", ErrBadRecipe, s.Ref)
		}
		v, err := e.open(ctx, ref, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref.Name, err)
		}
		v.key = "ref:" + ref.ID
		if v.size < 0 {
			v.size = ref.Size
		}
		return v, nil
	}
	return nil, fmt.Errorf("%w: %q cannot start a pipeline", ErrBadRecipe, s.Op)
}

func (e *Engine) openBlob(ctx context.Context, digest string) (*value, error) {
	size := int64(-1)
	for _, b := range e.recipe.Blobs {
		if b.Digest == digest {
			size = b.Size
		}
	}
	if p, ok := e.blobs.(BlobPather); ok {
		if path, ok := p.BlobPath(digest); ok {
			f, err := os.Open(path)
			if err != nil {
				return nil, fmt.Errorf("blob %s: %w", ShortDigest(digest), err)
			}
			if st, err := f.Stat(); err == nil {
				size = st.Size()
			}
			return &value{key: "blob:" + digest, r: f, ra: f, size: size}, nil
		}
	}
	rc, err := e.blobs.OpenBlob(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", ShortDigest(digest), err)
	}
	return &value{key: "blob:" + digest, r: rc, size: size}, nil
}

func (e *Engine) apply(ctx context.Context, s Step, in *value) (*value, error) {
	switch s.Op {
	case OpQcow2Decode:
		ra, err := e.randomAccess(in)
		if err != nil {
			return nil, err
		}
		img, err := qcow2.Open(ra, in.size)
		if err != nil {
			return nil, err
		}
		return &value{key: in.key + "|" + s.Op, ra: img, size: img.Size()}, nil

	case OpPatch:
		d, err := e.openBlob(ctx, s.Blob)
		if err != nil {
			return nil, fmt.Errorf("delta: %w", err)
		}
		pr, pw := io.Pipe()
		go func() {
			var err error
			if in.ra != nil && in.size >= 0 {
				err = delta.PatchAt(in.ra, in.size, d.stream(), pw)
			} else {
				err = delta.Patch(in.r, d.stream(), pw)
			}
			d.close()
			in.close()
			if err != nil {
				err = fmt.Errorf("patch with delta %s: %w", ShortDigest(s.Blob), err)
			}
			pw.CloseWithError(err)
		}()
		return &value{key: in.key + "|patch:" + s.Blob, r: pr, size: -1}, nil

	case OpQcow2Encode:
		var l qcow2.Layout
		if err := json.Unmarshal(s.Params, &l); err != nil {
			in.close()
			return nil, fmt.Errorf("%w: qcow2 layout: %v", ErrBadRecipe, err)
		}
		guest := in.stream()
		pr, pw := io.Pipe()
		go func() {
			err := qcow2.Encode(pw, guest, &l)
			guest.Close()
			in.close()
			pw.CloseWithError(err)
		}()
		return &value{key: in.key + "|qcow2-encode", r: pr, size: l.FileSize}, nil

	case OpX86Decode:
		v := &value{key: in.key + "|" + s.Op, size: in.size}
		if in.r != nil {
			v.r = readCloser{x86filter.NewReader(in.r), in.r}
		}
		if in.ra != nil && in.size >= 0 {
			v.ra = x86filter.NewReaderAt(in.ra, in.size)
		}
		return v, nil

	case OpZstdRestore:
		expanded := in.stream()
		pr, pw := io.Pipe()
		go func() {
			err := precomp.Restore(pw, expanded)
			expanded.Close()
			in.close()
			if err != nil {
				err = fmt.Errorf("zstd-restore: %w", err)
			}
			pw.CloseWithError(err)
		}()
		return &value{key: in.key + "|" + s.Op, r: pr, size: -1}, nil

	case OpExtract:
		if in.size >= 0 && s.Offset+s.Length > in.size {
			in.close()
			return nil, fmt.Errorf("%w: range %d+%d past the end of a %d-byte input", ErrBadRecipe, s.Offset, s.Length, in.size)
		}
		key := fmt.Sprintf("%s|extract:%d:%d", in.key, s.Offset, s.Length)
		if in.ra == nil && strings.HasPrefix(in.key, "ref:") {
			// Pieces of another artifact (the PXE files of the live ISO) usually come several
			// at a time: rebuild it once into a spool that they all read from.
			ra, err := e.randomAccess(in)
			if err != nil {
				return nil, err
			}
			in = &value{key: in.key, ra: ra, size: in.size}
		}
		if in.ra != nil {
			sr := io.NewSectionReader(in.ra, s.Offset, s.Length)
			return &value{key: key, r: readCloser{sr, closerFunc(in.close)}, ra: sr, size: s.Length}, nil
		}
		if _, err := io.CopyN(io.Discard, in.r, s.Offset); err != nil {
			in.close()
			return nil, fmt.Errorf("skip to %d: %w", s.Offset, err)
		}
		return &value{key: key, r: readCloser{io.LimitReader(in.r, s.Length), in.r}, size: s.Length}, nil
	}
	return e.applyFormat(s, in)
}

type readCloser struct {
	io.Reader
	io.Closer
}

type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }

// randomAccess returns in as an io.ReaderAt, writing its stream to a temporary file first when
// it has none. Materialised files are kept (by pipeline key) for the engine's lifetime, so the
// baseline is spooled once even when several artifacts derive from it; a caller that finds the
// file being written by another goroutine waits for it instead of writing its own.
func (e *Engine) randomAccess(in *value) (io.ReaderAt, error) {
	if in.ra != nil {
		return in.ra, nil
	}
	e.mu.Lock()
	s, ok := e.spooled[in.key]
	if !ok {
		s = &spoolEntry{done: make(chan struct{})}
		e.spooled[in.key] = s
	}
	e.mu.Unlock()
	if ok {
		in.close()
		<-s.done
		if s.err != nil {
			return nil, s.err
		}
		st, err := s.f.Stat()
		if err != nil {
			return nil, err
		}
		in.size = st.Size()
		return s.f, nil
	}
	f, n, err := e.spoolFile(in.r)
	in.close()
	s.f, s.err = f, err
	if err != nil {
		e.mu.Lock()
		delete(e.spooled, in.key) // a later call may try again
		e.mu.Unlock()
	} else {
		in.size = n
	}
	close(s.done)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// spoolFile writes r to a new temporary file in the engine's directory.
func (e *Engine) spoolFile(r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(e.tempDir, ".rehydrator-spool-*")
	if err != nil {
		return nil, 0, fmt.Errorf("spool: %w (set TMPDIR or --tmpdir to a directory with room)", err)
	}
	n, err := spool(f, r)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, fmt.Errorf("spool: %w", err)
	}
	return f, n, nil
}

// spool copies r to f, leaving holes for all-zero 64 KiB blocks (disk images are mostly zeros).
func spool(f *os.File, r io.Reader) (int64, error) {
	const block = 64 << 10
	buf := make([]byte, copyChunk)
	zero := make([]byte, block)
	var off int64
	for {
		n, err := io.ReadFull(r, buf)
		for i := 0; i < n; i += block {
			end := min(i+block, n)
			if !bytes.Equal(buf[i:end], zero[:end-i]) {
				if _, werr := f.WriteAt(buf[i:end], off+int64(i)); werr != nil {
					return off, werr
				}
			}
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return off, err
		}
	}
	return off, f.Truncate(off)
}

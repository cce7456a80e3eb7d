package rehydrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/rehydrator/rehydrator/internal/sparsefile"
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

	// steps holds every step's op and parameters, decoded once (or taken from Recipe.Validate).
	steps map[*Step]engineStep

	mu      sync.Mutex
	spooled map[string]*spoolEntry // materialised intermediate results, by pipeline key
	shared  map[string]bool        // artifacts read more than once by the expected selection (Expect)
}

type engineStep struct {
	decoded
	err error
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
	e := &Engine{recipe: r, blobs: src, tempDir: tempDir, steps: map[*Step]engineStep{}, spooled: map[string]*spoolEntry{}}
	for i := range r.Artifacts {
		for j := range r.Artifacts[i].Steps {
			s := &r.Artifacts[i].Steps[j]
			o, p, err := s.decode()
			from := *s
			from.cache = nil
			e.steps[s] = engineStep{decoded{from, o, p}, err}
		}
	}
	return e
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

// refKey is the pipeline key of an artifact's output as other artifacts read it (ref).
func refKey(id string) string { return "ref:" + id }

// Expect tells the engine which artifacts are about to be rehydrated, so that an artifact whose
// output they read more than once (the live ISO asked for beside its PXE pieces, or one
// artifact that two others start from) is rebuilt once: written to a spool the first time, and
// read from it afterwards. WriteDir and WriteStream call it; a caller of Rehydrate may.
func (e *Engine) Expect(arts []*Artifact) {
	runs := e.recipe.runs(arts)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.shared = map[string]bool{}
	for id, n := range runs {
		if n > 1 {
			e.shared[id] = true
		}
	}
}

// runs counts, for each artifact the selection needs, how often its pipeline would be read:
// once if selected, plus once for each run of an artifact whose pipeline starts from it. An
// artifact read more than once is spooled and so runs once. Refs form no cycle (Validate).
func (r *Recipe) runs(arts []*Artifact) map[string]int {
	selected := map[string]bool{}
	for _, a := range arts {
		selected[a.ID] = true
	}
	readers := map[string][]string{} // artifact -> the artifacts whose first step refs it
	for i := range r.Artifacts {
		a := &r.Artifacts[i]
		if len(a.Steps) > 0 && a.Steps[0].Op == OpRef && a.Steps[0].Ref != a.ID {
			readers[a.Steps[0].Ref] = append(readers[a.Steps[0].Ref], a.ID)
		}
	}
	reads := map[string]int{}
	var count func(id string, depth int) int
	count = func(id string, depth int) int {
		if n, ok := reads[id]; ok || depth > len(r.Artifacts) {
			return n
		}
		n := 0
		if selected[id] {
			n++
		}
		for _, c := range readers[id] {
			n += min(count(c, depth+1), 1) // a reader read twice is spooled: it reads its source once
		}
		reads[id] = n
		return n
	}
	for i := range r.Artifacts {
		count(r.Artifacts[i].ID, 0)
	}
	for id, n := range reads {
		if n == 0 {
			delete(reads, id)
		}
	}
	return reads
}

// value is the output of a step: a stream, random access, or both.
type value struct {
	key  string        // identity of the pipeline that produced it (for caching materialised files)
	r    io.ReadCloser // sequential stream from offset 0; nil when only ra is set
	ra   io.ReaderAt
	size int64 // -1 when unknown
}

// close closes the stream; a second call does nothing.
func (v *value) close() {
	if v.r != nil {
		v.r.Close()
		v.r = nil
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
	f, tee := e.claimRef(a.ID)
	if f != nil {
		// Already rebuilt for the artifacts that read it: copy it (checked again) from there.
		if err := verifiedCopy(ctx, w, io.NewSectionReader(f, 0, a.Size+1), a.Size, a.SHA256, progress); err != nil {
			return fmt.Errorf("rehydrate %s: %w", a.Name, err)
		}
		return nil
	}
	v, err := e.open(ctx, a, 0)
	if err != nil {
		if tee != nil {
			tee.finish(err)
		}
		return fmt.Errorf("rehydrate %s: %w", a.Name, err)
	}
	r := v.stream()
	defer r.Close()
	if tee != nil {
		r = readCloser{io.TeeReader(r, tee.f), r}
	}
	err = verifiedCopy(ctx, w, r, a.Size, a.SHA256, progress)
	if tee != nil {
		tee.finish(err)
	}
	if err != nil {
		return fmt.Errorf("rehydrate %s: %w", a.Name, err)
	}
	return nil
}

// claimRef looks for the spool of artifact id's output before its pipeline runs. It returns
// the spool when there is one (waiting for it while another caller writes it); else, when
// other expected artifacts read the output too (Expect), a new spool that the caller writes
// and finishes; else neither, and the caller runs the pipeline for itself alone. The check and
// the claim are one step under the lock, so two callers never both run a shared pipeline.
func (e *Engine) claimRef(id string) (*os.File, *spoolTee) {
	key := refKey(id)
	e.mu.Lock()
	s, ok := e.spooled[key]
	if !ok {
		defer e.mu.Unlock()
		if !e.shared[id] {
			return nil, nil
		}
		f, err := os.CreateTemp(e.tempDir, ".rehydrator-spool-*")
		if err != nil {
			return nil, nil // no room for a spool: each reader runs the pipeline itself
		}
		s = &spoolEntry{done: make(chan struct{})}
		e.spooled[key] = s
		return nil, &spoolTee{e: e, key: key, s: s, f: f}
	}
	e.mu.Unlock()
	<-s.done
	if s.err != nil {
		return nil, nil // its writer failed: run the pipeline (and meet the error) here
	}
	return s.f, nil
}

// spoolTee is the spool of an artifact's output being written: alongside its own rehydration
// (Rehydrate), or whole before its first reader reads it (ref, fill).
type spoolTee struct {
	e   *Engine
	key string
	s   *spoolEntry
	f   *os.File
}

// finish publishes the spool when the rehydration it followed succeeded (the whole output was
// read and checked), and drops it otherwise.
func (t *spoolTee) finish(err error) {
	if err != nil {
		t.f.Close()
		os.Remove(t.f.Name())
		t.s.err = err
		t.e.mu.Lock()
		delete(t.e.spooled, t.key)
		t.e.mu.Unlock()
	} else {
		t.s.f = t.f
	}
	close(t.s.done)
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

// open runs the artifact's steps and returns the final value (not yet verified). The loop knows
// no op: what each step is, where it may stand and whether it needs random access comes from
// the registry (op.go).
func (e *Engine) open(ctx context.Context, a *Artifact, depth int) (*value, error) {
	if depth > len(e.recipe.Artifacts) {
		return nil, fmt.Errorf("%w: refs nest deeper than the artifact count", ErrBadRecipe)
	}
	c := &call{ctx: ctx, e: e, depth: depth}
	defer c.closeSide()
	if err := c.readSide(a); err != nil {
		return nil, err
	}
	var v *value
	for i := range a.Steps {
		s := &a.Steps[i]
		out, err := e.step(c, s, i, v)
		if err != nil {
			if v != nil {
				v.close()
			}
			return nil, fmt.Errorf("step %d %s: %w", i, s, err)
		}
		v = out
	}
	return v, nil
}

// step runs step i on in (nil for the first); on error in is left to the caller to close.
func (e *Engine) step(c *call, s *Step, i int, in *value) (*value, error) {
	o, p, err := e.decoded(s)
	if err != nil {
		return nil, err
	}
	if o.source != (i == 0) {
		if o.source {
			return nil, fmt.Errorf("%w: %q can only start a pipeline", ErrBadRecipe, s.Op)
		}
		return nil, fmt.Errorf("%w: %q cannot start a pipeline", ErrBadRecipe, s.Op)
	}
	if o.randomAccess {
		ra, err := e.randomAccess(in)
		if err != nil {
			return nil, err
		}
		in = &value{key: in.key, ra: ra, size: in.size}
	}
	return o.apply(c, p, in)
}

// sideInMemory is the most of a side blob (a delta) kept in memory; a larger one goes to a
// temporary file.
var sideInMemory int64 = 16 << 20 // a variable for tests

// readSide reads the blobs that the steps after the source read (a patch's delta) before the
// source opens, and closes their readers. A blob of a zstd layer is decoded with a window of up
// to 128 MiB: were the delta's decoder open beside the baseline's for the whole run, the runtime
// would have to zero a second window (213 MiB peak for blob -> patch on the small release,
// against 82 MiB for the blob alone). Read first, the delta's window is garbage by the time the
// baseline's is allocated. (Collecting it right away with runtime.GC is worse: the baseline's
// window then reuses its pages, and zeroing them touches all 128 MiB.)
func (c *call) readSide(a *Artifact) error {
	for i := 1; i < len(a.Steps); i++ {
		o, p, err := c.e.decoded(&a.Steps[i])
		if err != nil || o.blobs == nil {
			continue // the step reports it when it runs
		}
		for _, d := range o.blobs(p) {
			if _, ok := c.side[d]; ok {
				continue
			}
			v, err := c.e.readBlob(c.ctx, d)
			if err != nil {
				return fmt.Errorf("step %d %s: %w", i, &a.Steps[i], err)
			}
			if c.side == nil {
				c.side = map[string]*value{}
			}
			c.side[d] = v
		}
	}
	return nil
}

// blob opens a blob a step reads besides its input: as readSide read it, or from the source.
func (c *call) blob(digest string) (*value, error) {
	if v, ok := c.side[digest]; ok {
		delete(c.side, digest)
		return v, nil
	}
	return c.e.openBlob(c.ctx, digest)
}

// closeSide closes the side blobs no step took.
func (c *call) closeSide() {
	for d, v := range c.side {
		v.close()
		delete(c.side, d)
	}
}

// readBlob opens a blob and, unless it is a plain file already, reads it whole (into memory, or
// a temporary file when it is large) and closes its reader.
func (e *Engine) readBlob(ctx context.Context, digest string) (*value, error) {
	v, err := e.openBlob(ctx, digest)
	if err != nil || v.ra != nil {
		return v, err
	}
	defer v.close()
	head, err := io.ReadAll(io.LimitReader(v.r, sideInMemory+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", ShortDigest(digest), err)
	}
	if int64(len(head)) <= sideInMemory {
		br := bytes.NewReader(head)
		return &value{key: v.key, r: io.NopCloser(br), ra: br, size: int64(len(head))}, nil
	}
	f, err := os.CreateTemp(e.tempDir, ".rehydrator-side-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w (set TMPDIR or --tmpdir to a directory with room)", err)
	}
	os.Remove(f.Name()) // gone with the last close
	n, err := io.Copy(f, io.MultiReader(bytes.NewReader(head), v.r))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s: spool: %w", ShortDigest(digest), err)
	}
	return &value{key: v.key, r: readCloser{io.NewSectionReader(f, 0, n), f}, ra: f, size: n}, nil
}

// decoded returns a step's op and parameters: as the engine decoded them when it was made.
func (e *Engine) decoded(s *Step) (*op, opParams, error) {
	if d, ok := e.steps[s]; ok && d.matches(s) {
		return d.op, d.p, d.err
	}
	return s.decode() // a step the engine has not seen, or one changed since

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

// fill writes v's stream into the spool, closes v and finishes the spool.
func (t *spoolTee) fill(v *value) (int64, error) {
	n, err := sparsefile.Copy(t.f, v.stream())
	v.close()
	if err != nil {
		err = fmt.Errorf("spool: %w", err)
	}
	t.finish(err)
	return n, err
}

// spoolFile writes r to a new temporary file in the engine's directory.
func (e *Engine) spoolFile(r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp(e.tempDir, ".rehydrator-spool-*")
	if err != nil {
		return nil, 0, fmt.Errorf("spool: %w (set TMPDIR or --tmpdir to a directory with room)", err)
	}
	n, err := sparsefile.Copy(f, r)
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, fmt.Errorf("spool: %w", err)
	}
	return f, n, nil
}

// Run runs a pipeline of steps against the blobs and writes what it produces to w, with no
// size or checksum check: what a planner uses to see what a candidate recipe makes. It
// returns the number of bytes written.
func Run(ctx context.Context, src BlobSource, blobs []Blob, steps []Step, w io.Writer) (int64, error) {
	r := &Recipe{SchemaVersion: SchemaVersion, Blobs: blobs, Artifacts: []Artifact{{ID: "candidate", Name: "candidate", Steps: steps}}}
	e := NewEngine(r, src, "")
	defer e.Close()
	v, err := e.open(ctx, &r.Artifacts[0], 0)
	if err != nil {
		return 0, err
	}
	rc := v.stream()
	defer rc.Close()
	return io.Copy(w, rc)
}

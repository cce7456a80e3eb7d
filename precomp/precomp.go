package precomp

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

const (
	magic   = "RHPRECMP"
	version = 1

	// maxFrame bounds a frame's compressed and decompressed size; squashfs blocks are at most
	// 1 MiB. Larger frames are left as they are.
	maxFrame = 4 << 20
	// maxFrames bounds the header a reader accepts, and so its memory (24 bytes a frame): a
	// 16 GiB squashfs of 128 KiB blocks has 128 Ki frames.
	maxFrames = 4 << 20
)

// ErrFormat marks an expanded stream that is not well formed.
var ErrFormat = errors.New("precomp: invalid expanded stream")

// ErrMismatch marks a frame that this build's libzstd does not compress to its original length:
// another zstd version or level made the original.
var ErrMismatch = errors.New("precomp: frame does not reproduce")

// Frame is one zstd frame of the original that Restore reproduces.
type Frame struct {
	Offset   int64 // in the original
	Length   int64 // compressed: bytes in the original
	Expanded int64 // decompressed: bytes in the expanded body
}

// Plan lists the frames Expand replaces by their content, all made at Level.
type Plan struct {
	Level  int
	Frames []Frame
}

// Covered is how many bytes of the original the frames hold.
func (p *Plan) Covered() int64 {
	var n int64
	for _, f := range p.Frames {
		n += f.Length
	}
	return n
}

// candidateLevels are tried, in order, on the first frames to find the level they were made at:
// mksquashfs's default (15), then zstd's CLI default and the usual others.
var candidateLevels = []int{15, 3, 19, 22, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 20, 21}

// levelProbes is how many frames are tried against every level before Scan gives up.
const levelProbes = 8

// Scan finds the zstd frames of r that this build reproduces bit for bit. It returns an empty
// plan when there are none, or when this build has no libzstd (see Version).
func Scan(r io.ReaderAt, size int64) (*Plan, error) {
	plan := &Plan{}
	if !haveCompressor {
		return plan, nil
	}
	cands, err := findFrames(r, size)
	if err != nil || len(cands) == 0 {
		return plan, err
	}
	c, err := newCompressor()
	if err != nil {
		return nil, err
	}
	defer c.close()
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxFrame))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	level := 0
	for i := 0; i < len(cands) && i < levelProbes && level == 0; i++ {
		src, content, err := readFrame(r, dec, cands[i], nil)
		if err != nil {
			continue
		}
		for _, l := range candidateLevels {
			if out, err := c.compress(content, l); err == nil && bytes.Equal(out, src) {
				level = l
				break
			}
		}
	}
	if level == 0 {
		return plan, nil
	}
	plan.Level = level
	ok := make([]bool, len(cands))
	err = parallel(len(cands), func() (func(i int) error, func(), error) {
		c, err := newCompressor()
		if err != nil {
			return nil, nil, err
		}
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxFrame))
		if err != nil {
			c.close()
			return nil, nil, err
		}
		var buf []byte
		return func(i int) error {
				src, content, err := readFrame(r, dec, cands[i], buf)
				if err != nil {
					return nil // not a frame after all: left as it is
				}
				buf = src[:0]
				out, err := c.compress(content, level)
				ok[i] = err == nil && bytes.Equal(out, src)
				if ok[i] {
					cands[i].Expanded = int64(len(content))
				}
				return nil
			}, func() {
				c.close()
				dec.Close()
			}, nil
	})
	if err != nil {
		return nil, err
	}
	for i, f := range cands {
		if ok[i] {
			plan.Frames = append(plan.Frames, f)
		}
	}
	return plan, nil
}

// findFrames lists the well-formed, dictionary-less frames of r with a known content size, none
// overlapping another.
func findFrames(r io.ReaderAt, size int64) ([]Frame, error) {
	const chunk = 8 << 20
	var out []Frame
	buf := make([]byte, chunk+maxFrame)
	for base := int64(0); base < size; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-base)], base)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("precomp: read at %d: %w", base, err)
		}
		b := buf[:n]
		// Frames must start in the first chunk bytes; the rest of buf lets them end past it.
		limit := min(n, chunk)
		next := int64(limit)
		for i := 0; i < limit; {
			j := bytes.Index(b[i:], zstdMagic)
			if j < 0 || i+j >= limit {
				break
			}
			p := i + j
			fi, ok := parseFrame(b[p:])
			if ok && fi.dictID == 0 && fi.contentSize >= 0 && fi.contentSize <= maxFrame && fi.length <= maxFrame {
				out = append(out, Frame{Offset: base + int64(p), Length: int64(fi.length)})
				i = p + fi.length
				if i > limit {
					next = int64(i)
				}
				continue
			}
			i = p + 1
		}
		if n < len(buf) && int64(n) == size-base {
			break
		}
		base += next
	}
	return out, nil
}

// readFrame reads frame f of r into buf and decodes it.
func readFrame(r io.ReaderAt, dec *zstd.Decoder, f Frame, buf []byte) (src, content []byte, err error) {
	if int64(cap(buf)) < f.Length {
		buf = make([]byte, f.Length)
	}
	src = buf[:f.Length]
	if _, err := r.ReadAt(src, f.Offset); err != nil {
		return nil, nil, err
	}
	content, err = dec.DecodeAll(src, nil)
	return src, content, err
}

// ExpandedSize is the size of the stream Expand writes for plan over a file of size bytes.
func (p *Plan) ExpandedSize(size int64) int64 {
	n := int64(len(p.header()))
	n += size
	for _, f := range p.Frames {
		n += f.Expanded - f.Length
	}
	return n
}

func (p *Plan) header() []byte {
	h := append([]byte(magic), 0)[:len(magic)]
	h = binary.AppendUvarint(h, version)
	h = binary.AppendUvarint(h, uint64(p.Level))
	h = binary.AppendUvarint(h, uint64(len(p.Frames)))
	var end int64
	for _, f := range p.Frames {
		h = binary.AppendUvarint(h, uint64(f.Offset-end))
		h = binary.AppendUvarint(h, uint64(f.Length))
		h = binary.AppendUvarint(h, uint64(f.Expanded))
		end = f.Offset + f.Length
	}
	return h
}

// Expand writes the expanded stream of r (size bytes) for plan, from Scan.
func Expand(w io.Writer, r io.ReaderAt, size int64, plan *Plan) error {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxFrame))
	if err != nil {
		return err
	}
	defer dec.Close()
	if _, err := w.Write(plan.header()); err != nil {
		return err
	}
	var end int64
	var buf, content []byte
	for _, f := range plan.Frames {
		if _, err := io.Copy(w, io.NewSectionReader(r, end, f.Offset-end)); err != nil {
			return err
		}
		var src []byte
		if src, content, err = readFrame(r, dec, f, buf); err != nil {
			return fmt.Errorf("precomp: frame at %d: %w", f.Offset, err)
		}
		buf = src[:0]
		if int64(len(content)) != f.Expanded {
			return fmt.Errorf("precomp: frame at %d decodes to %d bytes, the plan says %d", f.Offset, len(content), f.Expanded)
		}
		if _, err := w.Write(content); err != nil {
			return err
		}
		end = f.Offset + f.Length
	}
	_, err = io.Copy(w, io.NewSectionReader(r, end, size-end))
	return err
}

// readHeader reads an expanded stream's header.
func readHeader(br *bufio.Reader) (*Plan, error) {
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(br, m); err != nil || string(m) != magic {
		return nil, fmt.Errorf("%w: no %q magic", ErrFormat, magic)
	}
	field := func(what string, max uint64) (uint64, error) {
		v, err := binary.ReadUvarint(br)
		if err != nil {
			return 0, fmt.Errorf("%w: %s: %v", ErrFormat, what, err)
		}
		if v > max {
			return 0, fmt.Errorf("%w: %s %d exceeds %d", ErrFormat, what, v, max)
		}
		return v, nil
	}
	v, err := field("version", 1<<20)
	if err != nil {
		return nil, err
	}
	if v != version {
		return nil, fmt.Errorf("%w: version %d, this rehydrator reads version %d", ErrFormat, v, version)
	}
	level, err := field("level", 22)
	if err != nil {
		return nil, err
	}
	n, err := field("frame count", maxFrames)
	if err != nil {
		return nil, err
	}
	p := &Plan{Level: int(level)}
	var end int64
	for i := uint64(0); i < n; i++ {
		gap, err := field("gap", 1<<50)
		if err != nil {
			return nil, err
		}
		clen, err := field("frame length", maxFrame)
		if err != nil {
			return nil, err
		}
		elen, err := field("expanded length", maxFrame)
		if err != nil {
			return nil, err
		}
		if clen == 0 {
			return nil, fmt.Errorf("%w: frame %d has length 0", ErrFormat, i)
		}
		off := end + int64(gap)
		p.Frames = append(p.Frames, Frame{Offset: off, Length: int64(clen), Expanded: int64(elen)})
		end = off + int64(clen)
	}
	return p, nil
}

// Restore reads an expanded stream from r and writes the original, compressing the frames again
// on every CPU. A frame that does not compress to its recorded length is an error wrapping
// ErrMismatch that names its offset (the SHA-256 check of the whole output catches any other
// difference).
func Restore(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	plan, err := readHeader(br)
	if err != nil {
		return err
	}
	if len(plan.Frames) > 0 && !haveCompressor {
		_, err := newCompressor()
		return err
	}
	type job struct {
		gap     []byte // original bytes before the frame
		content []byte // the frame's data; nil for the tail
		f       Frame
		out     []byte
		err     error
		done    chan struct{}
	}
	workers := runtime.NumCPU()
	order := make(chan *job, 2*workers)
	work := make(chan *job, 2*workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cerr := newCompressor()
			if c != nil {
				defer c.close()
			}
			for j := range work {
				if cerr != nil {
					j.err = cerr
				} else if out, err := c.compress(j.content, plan.Level); err != nil {
					j.err = err
				} else {
					j.out = append(j.out[:0], out...)
				}
				close(j.done)
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(order)
		defer close(work)
		var end int64
		send := func(j *job) bool {
			select {
			case order <- j:
			case <-stop:
				return false
			}
			if j.content == nil {
				close(j.done)
				return true
			}
			select {
			case work <- j:
				return true
			case <-stop:
				close(j.done) // in order but never to be compressed: do not keep fail waiting
				return false
			}
		}
		for i, f := range plan.Frames {
			j := &job{f: f, done: make(chan struct{})}
			j.gap = make([]byte, 0, min(f.Offset-end, 1<<20))
			// Long gaps go out in pieces of at most 1 MiB, each as its own job.
			for rem := f.Offset - end; rem > 0; {
				k := min(rem, 1<<20)
				piece := make([]byte, k)
				if _, err := io.ReadFull(br, piece); err != nil {
					readErr <- fmt.Errorf("%w: body ends before frame %d at %d: %v", ErrFormat, i, f.Offset, err)
					return
				}
				rem -= k
				if rem > 0 {
					if !send(&job{gap: piece, done: make(chan struct{})}) {
						return
					}
					continue
				}
				j.gap = piece
			}
			j.content = make([]byte, f.Expanded)
			if _, err := io.ReadFull(br, j.content); err != nil {
				readErr <- fmt.Errorf("%w: body ends inside frame %d at %d: %v", ErrFormat, i, f.Offset, err)
				return
			}
			if !send(j) {
				return
			}
			end = f.Offset + f.Length
		}
		// The tail after the last frame.
		for {
			piece := make([]byte, 1<<20)
			n, err := io.ReadFull(br, piece)
			if n > 0 && !send(&job{gap: piece[:n], done: make(chan struct{})}) {
				return
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				readErr <- nil
				return
			}
			if err != nil {
				readErr <- err
				return
			}
		}
	}()
	fail := func(err error) error {
		close(stop)
		for j := range order { // let the reader and workers finish
			<-j.done
		}
		wg.Wait()
		return err
	}
	for j := range order {
		<-j.done
		if j.err != nil {
			return fail(fmt.Errorf("precomp: frame at %d: %w", j.f.Offset, j.err))
		}
		if _, err := w.Write(j.gap); err != nil {
			return fail(err)
		}
		if j.content != nil {
			if int64(len(j.out)) != j.f.Length {
				return fail(fmt.Errorf("%w: the frame at %d compresses to %d bytes, the original had %d (libzstd %s, level %d)", ErrMismatch, j.f.Offset, len(j.out), j.f.Length, Version(), plan.Level))
			}
			if _, err := w.Write(j.out); err != nil {
				return fail(err)
			}
		}
	}
	wg.Wait()
	return <-readErr
}

// parallel runs fn(i) for i in [0, n) on every CPU; setup makes each worker's function and
// its cleanup.
func parallel(n int, setup func() (func(i int) error, func(), error)) error {
	workers := min(runtime.NumCPU(), max(n, 1))
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		fn, cleanup, err := setup()
		if err != nil {
			close(next)
			wg.Wait()
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cleanup()
			for i := range next {
				if err := fn(i); err != nil {
					errs <- err
					for range next {
					}
					return
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

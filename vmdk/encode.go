package vmdk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
)

// MismatchError lists the grains whose re-encoded compressed stream differs
// in length from the one Params records. Encode returns it only after writing
// the whole image with the recorded layout (each such grain is cut or
// zero-padded to its recorded slot), so everything but those grains is
// exact and a delta against the output need only carry their bytes.
type MismatchError struct {
	LBAs []uint64 // first guest sector of each mismatching grain
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("vmdk: encode: %d re-encoded grains differ in size from the recorded ones (first at LBA %#x)", len(e.LBAs), e.LBAs[0])
}

// Unwrap returns ErrGrainMismatch.
func (e *MismatchError) Unwrap() error { return ErrGrainMismatch }

// Encode writes the streamOptimized image that p describes, taking the grain
// data from guest, the sequential guest view (it needs to reach only the end
// of the last allocated grain; a guest shorter than the capacity by less than
// a sector reads as zero-padded, as qemu-img pads a raw file). Given the Params
// of a qemu-img image and its guest view, it reproduces the image byte for
// byte, compressing grains in parallel with zlib as qemu does. If guest is an
// io.Seeker, unallocated ranges are skipped with Seek.
//
// Grains whose compressed length differs from the recorded one are reported
// with a *MismatchError after the whole image has been written. Encode needs
// cgo (zlib); without it, it fails with ErrUnsupported before writing.
func Encode(w io.Writer, guest io.Reader, p *Params) error {
	return EncodeWith(w, guest, p, EncodeOptions{})
}

// EncodeOptions let a caller supply or inspect the compressed stream of grains that zlib at
// the recorded level does not reproduce (an image made with another deflate, e.g. zlib-ng).
// Both funcs are called from the compressing workers, concurrently and in any order.
type EncodeOptions struct {
	// Grain, if set, is asked first for each grain (index: its first LBA / GrainSize, data:
	// its guest bytes): it writes the grain's whole zlib stream into dst and returns its
	// length with ok, or returns ok false to have zlib compress the grain.
	Grain func(index uint64, data, dst []byte) (n int, ok bool, err error)
	// Compressed, if set, sees each grain's compressed stream as it goes into the image.
	Compressed func(index uint64, data, comp []byte) error
}

// EncodeWith is Encode with opt's per-grain hooks.
func EncodeWith(w io.Writer, guest io.Reader, p *Params, opt EncodeOptions) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	mism, err := encode(writerEmitter{bw}, guest, p, opt)
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if len(mism) > 0 {
		return &MismatchError{LBAs: mism}
	}
	return nil
}

// emitter receives the image in file order; lba is the grain's first sector,
// or -1 for metadata and padding outside grains.
type emitter interface {
	emit(b []byte, lba int64) error
}

type writerEmitter struct{ w io.Writer }

func (e writerEmitter) emit(b []byte, _ int64) error {
	_, err := e.w.Write(b)
	return err
}

var zeros = make([]byte, 64<<10)

func emitZeros(out emitter, n int64, lba int64) error {
	for n > 0 {
		c := min(n, int64(len(zeros)))
		if err := out.emit(zeros[:c], lba); err != nil {
			return err
		}
		n -= c
	}
	return nil
}

// encode writes the image to out and returns the LBAs of grains whose size
// differs from the recorded one.
func encode(out emitter, guest io.Reader, p *Params, opt EncodeOptions) ([]uint64, error) {
	g, err := p.check()
	if err != nil {
		return nil, err
	}
	level, err := p.deflateLevel()
	if err != nil {
		return nil, err
	}
	if !zlibAvailable {
		return nil, errNoZlib
	}
	if err := writeMetadata(out, p, g); err != nil {
		return nil, err
	}
	mism, err := writeGrains(out, guest, p, g, level, opt)
	if err != nil {
		return nil, err
	}
	end := int64(p.Header.Overhead)
	_ = p.Grains.All(func(gr Grain) error { end += int64(slotSectors(gr.Size)); return nil })
	return mism, emitZeros(out, p.FileSize-end*SectorSize, -1)
}

func writeMetadata(out emitter, p *Params, g geometry) error {
	h := &p.Header
	pos := uint64(0)
	for _, r := range p.regions(g) {
		if err := emitZeros(out, int64(r.start-pos)*SectorSize, -1); err != nil {
			return err
		}
		var err error
		switch {
		case r.dir:
			err = writeDir(out, p, g, r.start)
		case r.start == 0:
			sec := make([]byte, SectorSize)
			copy(sec, h.marshal())
			err = out.emit(sec, -1)
		default:
			if err = out.emit(p.Descriptor, -1); err == nil {
				err = emitZeros(out, int64(r.sectors)*SectorSize-int64(len(p.Descriptor)), -1)
			}
		}
		if err != nil {
			return err
		}
		pos = r.start + r.sectors
	}
	return emitZeros(out, int64(h.Overhead-pos)*SectorSize, -1)
}

// writeDir writes a grain directory at sector start and its grain tables
// right after it, with the grain offsets the grain map implies.
func writeDir(out emitter, p *Params, g geometry, start uint64) error {
	le := binary.LittleEndian
	dir := make([]byte, g.gdSectors*SectorSize)
	for i := uint64(0); i < g.gdEntries; i++ {
		le.PutUint32(dir[i*4:], uint32(start+g.gdSectors+i*g.gtSectors))
	}
	if err := out.emit(dir, -1); err != nil {
		return err
	}
	n := uint64(p.Header.NumGTEsPerGT)
	gt := make([]byte, g.gtSectors*SectorSize)
	t := uint64(0)
	flush := func(upTo uint64) error {
		for ; t < upTo; t++ {
			if err := out.emit(gt, -1); err != nil {
				return err
			}
			clear(gt)
		}
		return nil
	}
	cur := p.Header.Overhead
	err := p.Grains.All(func(gr Grain) error {
		if err := flush(gr.Index / n); err != nil {
			return err
		}
		le.PutUint32(gt[(gr.Index%n)*4:], uint32(cur))
		cur += slotSectors(gr.Size)
		return nil
	})
	if err != nil {
		return err
	}
	return flush(g.gdEntries)
}

// grainJob is one grain on its way through the compressing workers.
type grainJob struct {
	gr   Grain
	in   *[]byte // guest bytes
	out  *[]byte // marker + compressed bytes, room for the whole slot
	n    int     // compressed length
	err  error
	done chan struct{}
}

// errNoZlib is what Encode says in a build without zlib (CGO_ENABLED=0).
var errNoZlib = fmt.Errorf("%w: re-encoding grains needs zlib's deflate (Go's gives other bytes), which a build without cgo lacks", ErrUnsupported)

var errStopped = errors.New("vmdk: encode stopped")

func writeGrains(out emitter, guest io.Reader, p *Params, g geometry, level int, opt EncodeOptions) ([]uint64, error) {
	workers := runtime.GOMAXPROCS(0)
	bound := zlibBound(int(g.grainBytes))
	outCap := grainMark + max(bound, 2*int(g.grainBytes)) + SectorSize
	inPool := sync.Pool{New: func() any { b := make([]byte, g.grainBytes); return &b }}
	outPool := sync.Pool{New: func() any { b := make([]byte, outCap); return &b }}

	queue := make(chan *grainJob, 2*workers)
	work := make(chan *grainJob, 2*workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				in := (*j.in)[:int(min(g.grainBytes, g.capBytes-int64(j.gr.Index)*g.grainBytes))]
				j.n, j.err = compressGrain(j, in, bound, level, opt)
				close(j.done)
			}
		}()
	}
	var readErr error
	go func() {
		defer close(queue)
		defer close(work)
		gr := newGuestReader(guest, g.capBytes)
		err := p.Grains.All(func(x Grain) error {
			j := &grainJob{gr: x, in: inPool.Get().(*[]byte), out: outPool.Get().(*[]byte), done: make(chan struct{})}
			off := int64(x.Index) * g.grainBytes
			n := min(g.grainBytes, g.capBytes-off)
			if err := gr.readAt((*j.in)[:n], off); err != nil {
				return fmt.Errorf("vmdk: encode: grain for LBA %#x: %w", x.Index*p.Header.GrainSize, err)
			}
			select {
			case work <- j:
			case <-stop:
				return errStopped
			}
			select {
			case queue <- j:
			case <-stop:
				return errStopped
			}
			return nil
		})
		if err != nil && err != errStopped {
			readErr = err
		}
	}()

	var mism []uint64
	var err error
	for j := range queue {
		<-j.done
		if err == nil {
			err = emitGrain(out, j, p.Header.GrainSize, &mism)
			if err != nil {
				close(stop)
			}
		}
		inPool.Put(j.in)
		outPool.Put(j.out)
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	return mism, nil
}

// compressGrain fills j.out after the marker with the grain's compressed stream: the
// caller's (opt.Grain) or zlib's.
func compressGrain(j *grainJob, in []byte, bound, level int, opt EncodeOptions) (int, error) {
	dst := (*j.out)[grainMark:]
	if opt.Grain != nil {
		n, ok, err := opt.Grain(j.gr.Index, in, dst[:len(dst)-SectorSize])
		if err != nil {
			return 0, err
		}
		if ok {
			return n, callCompressed(opt, j.gr.Index, in, dst[:n])
		}
	}
	n, err := zlibCompress(dst[:bound], in, level)
	if err != nil {
		return 0, err
	}
	return n, callCompressed(opt, j.gr.Index, in, dst[:n])
}

func callCompressed(opt EncodeOptions, index uint64, in, comp []byte) error {
	if opt.Compressed == nil {
		return nil
	}
	return opt.Compressed(index, in, comp)
}

// emitGrain writes a grain into its recorded slot: marker, compressed bytes,
// zeros to the next sector.
func emitGrain(out emitter, j *grainJob, grainSize uint64, mism *[]uint64) error {
	lba := j.gr.Index * grainSize
	if j.err != nil {
		return fmt.Errorf("vmdk: encode: grain for LBA %#x: %w", lba, j.err)
	}
	b := *j.out
	binary.LittleEndian.PutUint64(b, lba)
	binary.LittleEndian.PutUint32(b[8:], uint32(j.n))
	slot := int(slotSectors(j.gr.Size)) * SectorSize
	if end := grainMark + j.n; end < slot {
		clear(b[end:slot])
	}
	if uint32(j.n) != j.gr.Size {
		*mism = append(*mism, lba)
	}
	return out.emit(b[:slot], int64(lba))
}

// guestReader reads a sequential guest view at ascending offsets.
type guestReader struct {
	r      io.Reader
	seeker io.Seeker
	pos    int64
	size   int64
}

func newGuestReader(r io.Reader, size int64) *guestReader {
	g := &guestReader{r: r, size: size}
	if s, ok := r.(io.Seeker); ok {
		if _, err := s.Seek(0, io.SeekCurrent); err == nil {
			g.seeker = s
		}
	}
	return g
}

// readAt fills b with the guest bytes at off (off >= the previous end). The
// guest may end less than a sector before its size: the rest reads as zeros.
func (g *guestReader) readAt(b []byte, off int64) error {
	if off < g.pos {
		return fmt.Errorf("guest offset %#x read after %#x", off, g.pos)
	}
	if skip := off - g.pos; skip > 0 {
		var err error
		if g.seeker != nil {
			_, err = g.seeker.Seek(skip, io.SeekCurrent)
		} else {
			var n int64
			n, err = io.CopyN(io.Discard, g.r, skip)
			if err == io.EOF {
				err = fmt.Errorf("guest ends at offset %#x: %w", g.pos+n, io.ErrUnexpectedEOF)
			}
		}
		if err != nil {
			return err
		}
		g.pos = off
	}
	n, err := io.ReadFull(g.r, b)
	g.pos += int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		if g.pos > g.size-SectorSize {
			clear(b[n:])
			return nil
		}
		return fmt.Errorf("guest ends at offset %#x, image capacity is %#x bytes: %w", g.pos, g.size, io.ErrUnexpectedEOF)
	}
	return err
}

package erofsprecomp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/rehydrator/rehydrator/erofs"
	"github.com/rehydrator/rehydrator/lzmarepro"
)

const (
	magic   = "RHEROFSX"
	version = 1
	// maxClusters bounds the header a reader accepts (about 50 bytes a cluster in memory): a
	// 16 GiB image of 4 KiB clusters has 4 Mi.
	maxClusters = 4 << 20
	maxParams   = 16
	// gapPiece is the most original bytes one job carries.
	gapPiece = 1 << 20
)

// ErrFormat marks an expanded stream that is not well formed.
var ErrFormat = errors.New("erofsprecomp: invalid expanded stream")

// ErrMismatch marks a cluster that this build's liblzma does not compress back to its stream:
// another liblzma made the original.
var ErrMismatch = errors.New("erofsprecomp: cluster does not reproduce")

func (p *Plan) header() []byte {
	h := []byte(magic)
	h = binary.AppendUvarint(h, version)
	h = binary.AppendUvarint(h, uint64(len(p.Params)))
	for _, q := range p.Params {
		h = binary.AppendUvarint(h, uint64(q.Preset))
		h = binary.AppendUvarint(h, uint64(q.DictSize))
		h = binary.AppendUvarint(h, uint64(q.Props))
	}
	h = binary.AppendUvarint(h, uint64(len(p.Clusters)))
	var end int64
	for _, c := range p.Clusters {
		h = binary.AppendUvarint(h, uint64(c.Offset-end))
		h = binary.AppendUvarint(h, uint64(c.Length))
		h = binary.AppendUvarint(h, uint64(c.Stream))
		h = binary.AppendUvarint(h, uint64(c.Plain))
		la := uint64(c.Lookahead) << 1
		if c.Explicit {
			la |= 1
		}
		h = binary.AppendUvarint(h, la)
		h = binary.AppendUvarint(h, uint64(c.Param))
		end = c.Offset + c.Length
	}
	return h
}

// ExpandedSize is the size of the stream Expand writes for p over an image of size bytes.
func (p *Plan) ExpandedSize(size int64) int64 {
	n := int64(len(p.header())) + size
	for _, c := range p.Clusters {
		n += c.Plain - c.Length
		if c.Explicit {
			n += c.Lookahead
		}
	}
	return n
}

// Expand writes the expanded stream of the image r (size bytes) for plan, from Scan.
func Expand(w io.Writer, r io.ReaderAt, size int64, plan *Plan) error {
	if _, err := w.Write(plan.header()); err != nil {
		return err
	}
	if len(plan.Clusters) == 0 {
		_, err := io.Copy(w, io.NewSectionReader(r, 0, size))
		return err
	}
	im, err := erofs.Open(io.NewSectionReader(r, 0, size))
	if err != nil {
		return fmt.Errorf("erofsprecomp: %w", err)
	}
	dec, err := lzmarepro.NewEncoder()
	if err != nil {
		return err
	}
	defer dec.Close()
	var end int64
	var raw, plain []byte
	for _, c := range plan.Clusters {
		if _, err := io.Copy(w, io.NewSectionReader(r, end, c.Offset-end)); err != nil {
			return err
		}
		raw = grow(raw, c.Length)
		if _, err := r.ReadAt(raw, c.Offset); err != nil {
			return fmt.Errorf("erofsprecomp: cluster at %d: %w", c.Offset, err)
		}
		plain = grow(plain, c.Plain+c.Lookahead)
		if err := dec.DecodeMicroLZMA(plain[:c.Plain], raw[c.Length-c.Stream:], plan.Params[c.Param].DictSize); err != nil {
			return fmt.Errorf("erofsprecomp: cluster at %d: %w", c.Offset, err)
		}
		n := c.Plain
		if c.Explicit {
			f, err := im.Open(c.in)
			if err != nil {
				return fmt.Errorf("erofsprecomp: lookahead of the cluster at %d: %w", c.Offset, err)
			}
			if _, err := f.ReadAt(plain[n:n+c.Lookahead], c.lookOff); err != nil {
				return fmt.Errorf("erofsprecomp: lookahead of the cluster at %d: %w", c.Offset, err)
			}
			n += c.Lookahead
		}
		if _, err := w.Write(plain[:n]); err != nil {
			return err
		}
		end = c.Offset + c.Length
	}
	_, err = io.Copy(w, io.NewSectionReader(r, end, size-end))
	return err
}

func grow(b []byte, n int64) []byte {
	if int64(cap(b)) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// ReadPlan reads an expanded stream's header.
func ReadPlan(br *bufio.Reader) (*Plan, error) {
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
	np, err := field("params count", maxParams)
	if err != nil {
		return nil, err
	}
	p := &Plan{}
	for range np {
		preset, err := field("preset", 1<<32-1)
		if err != nil {
			return nil, err
		}
		if preset&^lzmarepro.Extreme > 9 {
			return nil, fmt.Errorf("%w: preset %#x", ErrFormat, preset)
		}
		dict, err := field("dictionary size", 1<<30)
		if err != nil {
			return nil, err
		}
		if dict < 4096 {
			return nil, fmt.Errorf("%w: dictionary size %d", ErrFormat, dict)
		}
		props, err := field("properties", 9*5*5-1)
		if err != nil {
			return nil, err
		}
		if props%9+props/9%5 > 4 {
			return nil, fmt.Errorf("%w: properties byte %#x", ErrFormat, props)
		}
		p.Params = append(p.Params, lzmarepro.Params{Preset: uint32(preset), DictSize: uint32(dict), Props: byte(props)})
	}
	n, err := field("cluster count", maxClusters)
	if err != nil {
		return nil, err
	}
	var end int64
	for i := uint64(0); i < n; i++ {
		var f [6]uint64
		limits := [6]uint64{1 << 50, maxCluster, maxCluster, maxPlain, 2*Lookahead + 1, uint64(max(len(p.Params), 1) - 1)}
		names := [6]string{"gap", "cluster length", "stream length", "plain length", "lookahead", "params index"}
		for k := range f {
			if f[k], err = field(names[k], limits[k]); err != nil {
				return nil, fmt.Errorf("%w (cluster %d)", err, i)
			}
		}
		if f[5] >= uint64(len(p.Params)) {
			return nil, fmt.Errorf("%w: cluster %d uses params %d of %d", ErrFormat, i, f[5], len(p.Params))
		}
		if f[2] < 6 || f[2] > f[1] || f[3] == 0 {
			return nil, fmt.Errorf("%w: cluster %d: stream of %d bytes in %d, %d plain", ErrFormat, i, f[2], f[1], f[3])
		}
		off := end + int64(f[0])
		p.Clusters = append(p.Clusters, Cluster{Offset: off, Length: int64(f[1]), Stream: int64(f[2]), Plain: int64(f[3]),
			Lookahead: int64(f[4] >> 1), Explicit: f[4]&1 != 0, Param: int(f[5])})
		end = off + int64(f[1])
	}
	return p, nil
}

// Restore reads an expanded stream from r and writes the original image, compressing the
// clusters again on parallelism workers (at least one). A cluster that does not compress to its
// recorded stream length is an error wrapping ErrMismatch that names its offset (the caller's
// checksum of the whole output catches any other difference). Without cgo a stream with
// expanded clusters fails with an error wrapping errors.ErrUnsupported.
func Restore(w io.Writer, r io.Reader, parallelism int) error {
	br := bufio.NewReaderSize(r, 1<<20)
	plan, err := ReadPlan(br)
	if err != nil {
		return err
	}
	if len(plan.Clusters) > 0 {
		enc, err := lzmarepro.NewEncoder()
		if err != nil {
			return fmt.Errorf("erofsprecomp: %w", err)
		}
		enc.Close()
	}
	type job struct {
		gap  []byte // original bytes before the cluster (or a piece of a long run)
		in   []byte // plain data and lookahead; nil for a gap piece
		c    Cluster
		out  []byte
		err  error
		done chan struct{}
	}
	workers := max(parallelism, 1)
	order := make(chan *job, 2*workers)
	work := make(chan *job, workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc, eerr := lzmarepro.NewEncoder()
			defer enc.Close()
			for j := range work {
				if eerr != nil {
					j.err = eerr
				} else {
					p := plan.Params[j.c.Param]
					stream, n, err := enc.MicroLZMA(j.in, int(j.c.Stream), p)
					switch {
					case err != nil:
						j.err = err
					case int64(len(stream)) != j.c.Stream || int64(n) != j.c.Plain:
						j.err = fmt.Errorf("%w: the cluster at %d compresses to %d bytes taking %d, the original had %d taking %d (liblzma %s, %s)",
							ErrMismatch, j.c.Offset, len(stream), n, j.c.Stream, j.c.Plain, lzmarepro.Version(), p)
					default:
						pad := j.c.Length - j.c.Stream
						j.out = make([]byte, j.c.Length)
						copy(j.out[pad:], stream)
					}
				}
				j.in = nil
				close(j.done)
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(order)
		defer close(work)
		send := func(j *job) bool {
			select {
			case order <- j:
			case <-stop:
				return false
			}
			if j.in == nil {
				close(j.done)
				return true
			}
			select {
			case work <- j:
				return true
			case <-stop:
				close(j.done)
				return false
			}
		}
		var end int64
		for i, c := range plan.Clusters {
			j := &job{c: c, done: make(chan struct{})}
			for rem := c.Offset - end; rem > 0; {
				k := min(rem, gapPiece)
				piece := make([]byte, k)
				if _, err := io.ReadFull(br, piece); err != nil {
					readErr <- fmt.Errorf("%w: body ends before cluster %d at %d: %v", ErrFormat, i, c.Offset, err)
					return
				}
				if rem -= k; rem > 0 {
					if !send(&job{gap: piece, done: make(chan struct{})}) {
						return
					}
					continue
				}
				j.gap = piece
			}
			j.in = make([]byte, c.Plain+c.Lookahead)
			if _, err := io.ReadFull(br, j.in[:c.Plain]); err != nil {
				readErr <- fmt.Errorf("%w: body ends inside cluster %d at %d: %v", ErrFormat, i, c.Offset, err)
				return
			}
			if c.Explicit {
				_, err = io.ReadFull(br, j.in[c.Plain:])
			} else if c.Lookahead > 0 {
				var b []byte
				b, err = br.Peek(int(c.Lookahead))
				copy(j.in[c.Plain:], b)
			}
			if err != nil {
				readErr <- fmt.Errorf("%w: body ends inside the lookahead of cluster %d at %d: %v", ErrFormat, i, c.Offset, err)
				return
			}
			if !send(j) {
				return
			}
			end = c.Offset + c.Length
		}
		for {
			piece := make([]byte, gapPiece)
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
		for j := range order {
			<-j.done
		}
		wg.Wait()
		return err
	}
	for j := range order {
		<-j.done
		if j.err != nil {
			return fail(fmt.Errorf("erofsprecomp: cluster at %d: %w", j.c.Offset, j.err))
		}
		if _, err := w.Write(j.gap); err != nil {
			return fail(err)
		}
		if j.out != nil {
			if _, err := w.Write(j.out); err != nil {
				return fail(err)
			}
		}
	}
	wg.Wait()
	return <-readErr
}

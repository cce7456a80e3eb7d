package erofsprecomp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/rehydrator/rehydrator/erofs"
	"github.com/rehydrator/rehydrator/lzmarepro"
)

// Lookahead bounds the bytes after a cluster's plain data that Scan gives the encoder. liblzma's
// optimal parser looks at most 4096 positions plus a 273-byte match ahead of what it emits, so
// the output never depends on more.
const Lookahead = 8192

const (
	// maxPlain bounds a cluster's plain data (mkfs.erofs: 12 MiB, Z_EROFS_PCLUSTER_MAX_DSIZE).
	maxPlain = 16 << 20
	// maxCluster bounds a cluster's bytes (Z_EROFS_PCLUSTER_MAX_SIZE).
	maxCluster = 1 << 20
	// maxRefs is how many files sharing a cluster (dedupe) Scan tries it with.
	maxRefs = 2
	// detectClusters is how many clusters Scan tries every preset on.
	detectClusters = 4
	// maxRounds bounds the settings Scan detects in one image.
	maxRounds = 4
)

// presets are the liblzma presets Scan tries (a variable for tests).
var presets = lzmarepro.Presets

// Cluster is one LZMA physical cluster of the image that Restore reproduces.
type Cluster struct {
	Offset int64 // in the image
	Length int64 // bytes in the image: zeros, then the stream
	Stream int64 // MicroLZMA stream length
	Plain  int64 // plain bytes in the expanded body
	// Lookahead bytes follow the plain data in the encoder's input; Explicit ones are stored in
	// the body after the plain data, the others are the body's next bytes.
	Lookahead int64
	Explicit  bool
	Param     int // index into Plan.Params

	// Where Expand finds an explicit lookahead: the inode and its file offset.
	in      *erofs.Inode
	lookOff int64
}

// Plan lists the clusters Expand replaces by their plain data.
type Plan struct {
	Params   []lzmarepro.Params
	Clusters []Cluster
	// Seen is how many LZMA clusters the image has; Seen - len(Clusters) stay compressed.
	Seen int
}

// Covered is how many bytes of the image the expanded clusters hold.
func (p *Plan) Covered() int64 {
	var n int64
	for _, c := range p.Clusters {
		n += c.Length
	}
	return n
}

// ref is one file's use of a cluster.
type ref struct {
	in   *erofs.Inode
	ext  erofs.Extent
	next *erofs.Extent // the file's next extent, if any
	// fragStart is where the file's fragment (its tail in the packed inode) starts, or -1.
	fragStart int64
}

type candidate struct {
	offset, length int64
	refs           []ref
	// result
	ok        bool
	stream    int64
	plain     int64
	lookahead int64
	lookOff   int64
	lookIn    *erofs.Inode
	implicit  bool // the lookahead is the start of the next cluster's plain data, if expanded
	nextOff   int64
	param     int
}

// Scan finds the LZMA clusters of the EROFS image r (size bytes) that this build reproduces bit
// for bit, using parallelism workers (at least one). It returns an empty plan when there are
// none, when the image has no LZMA clusters, or when this build has no liblzma (without cgo).
func Scan(r io.ReaderAt, size int64, parallelism int) (*Plan, error) {
	plan := &Plan{}
	im, err := erofs.Open(io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, fmt.Errorf("erofsprecomp: %w", err)
	}
	sb := im.Superblock()
	if sb.ComprAlgs&(1<<erofs.LZMA) == 0 {
		return plan, nil
	}
	cands, err := collect(im)
	if err != nil {
		return nil, err
	}
	plan.Seen = len(cands)
	if len(cands) == 0 {
		return plan, nil
	}
	enc, err := lzmarepro.NewEncoder()
	if errors.Is(err, errors.ErrUnsupported) {
		return plan, nil
	}
	if err != nil {
		return nil, err
	}
	enc.Close()
	// Each round detects the settings of the first clusters left and tries them on all that
	// are left: images made with several configs (mkfs.erofs -zlzma,level=6:lzma,level=1 and
	// compress hints) get one entry of Params each.
	left := make([]int, len(cands))
	for i := range left {
		left[i] = i
	}
	for len(left) > 0 && len(plan.Params) < maxRounds {
		params, err := detect(im, cands, left)
		if err != nil {
			return nil, err
		}
		if params == nil {
			break
		}
		idx := len(plan.Params)
		plan.Params = append(plan.Params, *params)
		err = parallel(len(left), parallelism, func() (func(i int) error, func(), error) {
			enc, err := lzmarepro.NewEncoder()
			if err != nil {
				return nil, nil, err
			}
			return func(i int) error {
				c := &cands[left[i]]
				c.param = idx
				return try(im, enc, c, *params, false)
			}, enc.Close, nil
		})
		if err != nil {
			return nil, err
		}
		next := left[:0]
		for _, i := range left {
			if !cands[i].ok {
				next = append(next, i)
			}
		}
		left = next
	}
	for i := range cands {
		c := &cands[i]
		if !c.ok {
			continue
		}
		explicit := c.lookahead > 0
		if c.implicit && i+1 < len(cands) && cands[i+1].ok && cands[i+1].offset == c.nextOff &&
			c.offset+c.length == c.nextOff && cands[i+1].plain >= c.lookahead {
			explicit = false
		}
		plan.Clusters = append(plan.Clusters, Cluster{
			Offset: c.offset, Length: c.length, Stream: c.stream, Plain: c.plain,
			Lookahead: c.lookahead, Explicit: explicit, Param: c.param, in: c.lookIn, lookOff: c.lookOff,
		})
	}
	return plan, nil
}

// collect lists the LZMA clusters of every file and of the packed inode, in image order, with
// up to maxRefs files using each.
func collect(im *erofs.Image) ([]candidate, error) {
	byOff := map[int64]int{}
	var cands []candidate
	seen := map[uint64]bool{}
	add := func(in *erofs.Inode) error {
		if seen[in.Nid] || !in.Layout.Compressed() {
			return nil
		}
		seen[in.Nid] = true
		exts, err := im.Extents(in)
		if err != nil {
			return fmt.Errorf("erofsprecomp: %w", err)
		}
		frag := int64(-1)
		for _, e := range exts {
			if e.Kind == erofs.Fragment {
				frag = e.FileOffset
			}
		}
		for i, e := range exts {
			if e.Kind != erofs.Compressed || e.Algorithm != erofs.LZMA || e.PhysLength > maxCluster || e.PhysLength < 6 {
				continue
			}
			rf := ref{in: in, ext: e, fragStart: frag}
			if i+1 < len(exts) {
				rf.next = &exts[i+1]
			}
			if k, ok := byOff[e.PhysOffset]; ok {
				if cands[k].length == e.PhysLength && len(cands[k].refs) < maxRefs {
					cands[k].refs = append(cands[k].refs, rf)
				}
				continue
			}
			byOff[e.PhysOffset] = len(cands)
			cands = append(cands, candidate{offset: e.PhysOffset, length: e.PhysLength, refs: []ref{rf}})
		}
		return nil
	}
	err := im.Walk(func(_ string, in *erofs.Inode) error { return add(in) })
	if err != nil {
		return nil, fmt.Errorf("erofsprecomp: %w", err)
	}
	p, err := im.Packed()
	if err != nil {
		return nil, fmt.Errorf("erofsprecomp: %w", err)
	}
	if p != nil {
		if err := add(p); err != nil {
			return nil, err
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].offset < cands[j].offset })
	// Crafted images may overlap clusters; keep the first of any overlap.
	out := cands[:0]
	var end int64
	for _, c := range cands {
		if c.offset >= end {
			out = append(out, c)
			end = c.offset + c.length
		}
	}
	return out, nil
}

// dictCandidates are the dictionary sizes detect tries after the superblock's.
var dictCandidates = []uint32{8 << 20, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 2 << 20, 32 << 20}

// detect finds the preset and dictionary that reproduce the first clusters, or nil.
func detect(im *erofs.Image, cands []candidate, left []int) (*lzmarepro.Params, error) {
	enc, err := lzmarepro.NewEncoder()
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	sb := im.Superblock()
	dicts := []uint32{}
	if sb.LZMADictSize >= 4096 {
		dicts = append(dicts, sb.LZMADictSize)
	}
	for _, d := range dictCandidates {
		if d != sb.LZMADictSize {
			dicts = append(dicts, d)
		}
	}
	tried := 0
	for _, i := range left {
		if tried >= detectClusters {
			break
		}
		c := &cands[i]
		if c.refs[0].ext.Partial {
			continue
		}
		tried++
		raw, err := im.ReadCluster(c.refs[0].ext)
		if err != nil {
			return nil, fmt.Errorf("erofsprecomp: cluster at %d: %w", c.offset, err)
		}
		props, ok := lzmarepro.StreamProps(bytes.TrimLeft(raw, "\x00"))
		if !ok {
			continue
		}
		for _, d := range dicts {
			for _, pr := range presets {
				p := lzmarepro.Params{Preset: pr, DictSize: d, Props: props}
				if err := try(im, enc, c, p, true); err != nil {
					return nil, err
				}
				if c.ok {
					c.ok = false // the parallel pass does it again with all the others
					return &p, nil
				}
			}
		}
	}
	return nil, nil
}

// try tells whether c reproduces with p, trying the files that use it and the lookaheads
// mkfs.erofs may have given (the rest of the file, the file up to its fragment, nothing), and
// records how in c.
func try(im *erofs.Image, enc *lzmarepro.Encoder, c *candidate, p lzmarepro.Params, probeOnly bool) error {
	raw, err := im.ReadCluster(c.refs[0].ext)
	if err != nil {
		return fmt.Errorf("erofsprecomp: cluster at %d: %w", c.offset, err)
	}
	z := 0
	for z < len(raw) && raw[z] == 0 {
		z++
	}
	stream := raw[z:]
	props, ok := lzmarepro.StreamProps(stream)
	if !ok || len(stream) < 6 {
		return nil
	}
	if props != p.Props {
		return nil // made with other lc/lp/pb
	}
	for _, rf := range c.refs {
		f, err := im.Open(rf.in)
		if err != nil {
			return nil // a file we cannot read: the cluster stays compressed
		}
		e := rf.ext
		fsize := int64(rf.in.Size)
		want := e.Length + Lookahead
		if e.Partial {
			want = maxPlain + Lookahead
		}
		want = min(want, fsize-e.FileOffset)
		in := make([]byte, want)
		if n, err := f.ReadAt(in, e.FileOffset); int64(n) != want {
			_ = err
			continue
		}
		if e.Partial {
			// A deduplicated tail shortened the extent: the encoder tells how much it took.
			out, n, err := enc.MicroLZMA(in, len(stream), p)
			if err != nil || n < int(e.Length) || !equal(out, stream) {
				continue
			}
			in = in[:min(int64(len(in)), int64(n)+Lookahead)]
			good, err := enc.Reproduces(in, stream, n, p)
			if err != nil {
				return err
			}
			if good {
				c.setOK(stream, int64(n), int64(len(in)-n), rf, false)
				return nil
			}
			continue
		}
		rest := want - e.Length
		las := []int64{rest}
		if rf.fragStart >= 0 {
			if k := rf.fragStart - (e.FileOffset + e.Length); k >= 0 && k < rest {
				las = append(las, k)
			}
		}
		if rest > 0 {
			las = append(las, 0)
		}
		if probeOnly || len(stream) > 64<<10 {
			// A wrong preset shows in the first KiB of output: skip the whole encodings.
			good, err := enc.Probe(in, stream, p)
			if err != nil {
				return err
			}
			if !good {
				continue
			}
		}
		for _, la := range las {
			good, err := enc.Reproduces(in[:e.Length+la], stream, int(e.Length), p)
			if err != nil {
				return err
			}
			if good {
				implicit := rf.next != nil && rf.next.Kind == erofs.Compressed &&
					rf.next.FileOffset == e.FileOffset+e.Length && !rf.next.Partial && rf.next.Length >= la
				c.setOK(stream, e.Length, la, rf, implicit)
				return nil
			}
		}
	}
	return nil
}

func (c *candidate) setOK(stream []byte, plain, la int64, rf ref, implicit bool) {
	c.ok = true
	c.stream = int64(len(stream))
	c.plain = plain
	c.lookahead = la
	c.lookIn = rf.in
	c.lookOff = rf.ext.FileOffset + plain
	c.implicit = implicit
	if rf.next != nil {
		c.nextOff = rf.next.PhysOffset
	}
}

func equal(a, b []byte) bool { return string(a) == string(b) }

// parallel runs fn(i) for i in [0, n) on workers goroutines; setup makes each worker's
// function and its cleanup. The first error stops the rest.
func parallel(n, workers int, setup func() (func(i int) error, func(), error)) error {
	workers = min(max(workers, 1), max(n, 1))
	next := make(chan int)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil {
			first = err
			close(stop)
		}
	}
	for range workers {
		fn, cleanup, err := setup()
		if err != nil {
			fail(err)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cleanup()
			for i := range next {
				if err := fn(i); err != nil {
					fail(err)
				}
			}
		}()
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-stop:
			break feed
		}
	}
	close(next)
	wg.Wait()
	return first
}

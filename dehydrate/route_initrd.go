package dehydrate

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/rehydrator/rehydrator/filemap"
	"github.com/rehydrator/rehydrator/filemap/fslist"
	"github.com/rehydrator/rehydrator/iso"
	"github.com/rehydrator/rehydrator/precomp"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// The live ISO's initramfs (images/pxeboot/initrd.img: a gzip newc cpio, or the tree's
// initramfs with a gzip cpio appended) expanded inside an ISO route: each gzip stream that
// reflate rebuilds cheaply is replaced by its plain data in the expanded stream, so that the
// delta sees the cpio's files, and the gzip-spans step deflates it again bit for bit when
// rehydrating. It composes with the EROFS expansion as a writer between erofsprecomp's expanded
// stream and the file the delta reads: the spans are placed in that stream's coordinates,
// gzip-spans runs before erofs-restore.

// initrdMaxRecon is the largest reconstruction data, as a share of the gzip stream, for which
// the stream is expanded (1/20 = 5%; initrdReconFloor bytes whatever the share, the headers'
// and records' own cost): above it reflate does not predict the producer well and the stream
// stays compressed.
const (
	initrdMaxRecon   = 20
	initrdReconFloor = 256
)

// initrdMaxTries bounds the gzip header candidates tried in one file (a gzip magic inside the
// xz data before the appended cpio is a chance match that fails at once).
const initrdMaxTries = 16

// initrdSpan is one gzip stream of the ISO expanded: at in the ISO, size bytes long; plain is
// the file holding its plain data (plainSize bytes), recon reflate's data.
type initrdSpan struct {
	at, size   int64
	plain      *os.File
	plainSize  int64
	recon      []byte
	expandedAt int64 // offset in the stream the spans are spliced into
}

// initrdExpansion is the set of gzip streams an ISO route expands.
type initrdExpansion struct {
	spans []*initrdSpan
}

// isInitramfsName says whether an ISO path names an initramfs (initrd.img, initramfs*.img).
func isInitramfsName(p string) bool {
	b := strings.ToLower(path.Base(p))
	return strings.HasPrefix(b, "initrd") || strings.HasPrefix(b, "initramfs")
}

// initrdCandidates lists the initramfs files of the ISO r (size bytes); none when r is not an
// ISO.
func initrdCandidates(r io.ReaderAt, size int64) []iso.Extent {
	img, err := iso.Open(r, size)
	if err != nil {
		return nil
	}
	files, err := img.Files()
	if err != nil {
		return nil
	}
	var out []iso.Extent
	for _, f := range files {
		if !f.IsDir && f.Contiguous() && f.Size >= 64 && isInitramfsName(f.Path) {
			out = append(out, iso.Extent{Offset: f.Offset, Size: f.Size})
		}
	}
	sortExtents(&out) // file order; hard links (the same extent twice) once
	return out
}

// overlaps says whether the size bytes at off overlap one of the extents.
func overlaps(off, size int64, ext []iso.Extent) bool {
	for _, e := range ext {
		if off < e.Offset+e.Size && e.Offset < off+size {
			return true
		}
	}
	return false
}

// gzipHeaderAt says whether b starts like a gzip member header: magic, deflate, no reserved
// flag bits.
func gzipHeaderAt(b []byte) bool {
	return len(b) >= 10 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8 && b[3]&0xe0 == 0
}

// splitInitrd finds the first gzip member of the file extent e of r from which reflate splits
// everything to the end of the file (later members and up to 1 MiB of trailing bytes
// included) and which overlaps none of skip (what another expansion owns), and returns that
// span with its plain data in a temporary file of dir; nil when there is none or its
// reconstruction data is too large.
func splitInitrd(ctx context.Context, r io.ReaderAt, e iso.Extent, skip []iso.Extent, dir string) (*initrdSpan, error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk+9)
	tries := 0
	for off := int64(0); off < e.Size && tries < initrdMaxTries; off += chunk {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), e.Size-off)], e.Offset+off)
		if err != nil && err != io.EOF {
			return nil, err
		}
		for i := 0; i < n && i < chunk && tries < initrdMaxTries; i++ {
			j := bytes.IndexByte(buf[i:min(n, chunk)], 0x1f)
			if j < 0 {
				break
			}
			i += j
			if !gzipHeaderAt(buf[i:n]) {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			at := e.Offset + off + int64(i)
			if overlaps(at, e.Offset+e.Size-at, skip) {
				continue
			}
			tries++
			s, err := splitGzipSpan(r, at, e.Offset+e.Size-at, dir)
			if err != nil {
				return nil, err
			}
			if s != nil {
				return s, nil
			}
		}
	}
	return nil, nil
}

// splitGzipSpan splits the size bytes of r at at as a gzip file; nil when they are not one
// reflate splits to their end.
func splitGzipSpan(r io.ReaderAt, at, size int64, dir string) (*initrdSpan, error) {
	f, err := os.CreateTemp(dir, ".initrd-plain-*")
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	cw := new(countingWriter)
	recon, n, err := rehydrate.GzipSplit(bufio.NewReaderSize(io.NewSectionReader(r, at, size), 1<<20), io.MultiWriter(bw, cw))
	if err != nil || n != size || (len(recon) > initrdReconFloor && int64(len(recon))*initrdMaxRecon > size) {
		return nil, nil // not a gzip file to the end, or one reflate does not predict well
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	keep = true
	return &initrdSpan{at: at, size: size, plain: f, plainSize: int64(*cw), recon: recon}, nil
}

// initrdAfterEROFS expands the initramfs gzip streams of the ISO r (size bytes) in the stream
// expandEROFS makes of it with images.
func initrdAfterEROFS(ctx context.Context, r io.ReaderAt, size int64, images []erofsImage, dir string, say func(string, ...any)) (*initrdExpansion, error) {
	var skip []iso.Extent
	for _, im := range images {
		skip = append(skip, iso.Extent{Offset: im.offset, Size: im.size})
	}
	return expandInitrd(ctx, r, size, skip, func(at int64) int64 {
		for _, im := range images {
			if im.offset+im.size <= at {
				at += im.plan.ExpandedSize(im.size) - im.size
			}
		}
		return at
	}, dir, say)
}

// initrdAfterPrecomp expands the initramfs gzip streams of the ISO r (size bytes) in the
// stream precomp.Expand makes of it with plan (its header, then the frames expanded).
func initrdAfterPrecomp(ctx context.Context, r io.ReaderAt, size int64, plan *precomp.Plan, dir string, say func(string, ...any)) (*initrdExpansion, error) {
	var skip []iso.Extent
	for _, f := range plan.Frames {
		skip = append(skip, iso.Extent{Offset: f.Offset, Size: f.Length})
	}
	header := precompHeader(plan, size)
	return expandInitrd(ctx, r, size, skip, func(at int64) int64 {
		x := header + at
		for _, f := range plan.Frames {
			if f.Offset+f.Length <= at {
				x += f.Expanded - f.Length
			}
		}
		return x
	}, dir, say)
}

// precompHeader is the length of the header of precomp's expanded stream.
func precompHeader(plan *precomp.Plan, size int64) int64 {
	n := plan.ExpandedSize(size) - size
	for _, f := range plan.Frames {
		n -= f.Expanded - f.Length
	}
	return n
}

// precompExpansion describes, for the file map, the stream precomp.Expand makes with plan of
// an original of size bytes, with gz's spans expanded too.
func precompExpansion(plan *precomp.Plan, size int64, gz *initrdExpansion) (*filemap.Expansion, error) {
	if gz == nil {
		return fslist.Expansion(plan, size)
	}
	var frames []filemap.Frame
	for _, f := range plan.Frames {
		frames = append(frames, filemap.Frame{Offset: f.Offset, Length: f.Length, Expanded: f.Expanded})
	}
	for _, s := range gz.spans {
		frames = append(frames, filemap.Frame{Offset: s.at, Length: s.size, Expanded: s.plainSize})
	}
	slices.SortFunc(frames, func(a, b filemap.Frame) int { return cmp.Compare(a.Offset, b.Offset) })
	return filemap.NewExpansion(precompHeader(plan, size), frames)
}

// expandInitrd finds and splits the initramfs gzip streams of the ISO r (size bytes) that
// overlap none of skip, and places each in the expanded stream at shift(its offset); nil when
// there is none.
func expandInitrd(ctx context.Context, r io.ReaderAt, size int64, skip []iso.Extent, shift func(int64) int64, dir string, say func(string, ...any)) (*initrdExpansion, error) {
	x := &initrdExpansion{}
	for _, e := range initrdCandidates(r, size) {
		t0 := time.Now()
		s, err := splitInitrd(ctx, r, e, skip, dir)
		if err != nil {
			x.close()
			return nil, err
		}
		if s == nil {
			say("initramfs at %d (%d bytes): no gzip stream reflate rebuilds cheaply: left compressed", e.Offset, e.Size)
			continue
		}
		say("initramfs at %d: gzip stream at %d, %d bytes, expanded to %d (%d bytes of reconstruction data; %.1fs)",
			e.Offset, s.at, s.size, s.plainSize, len(s.recon), time.Since(t0).Seconds())
		s.expandedAt = shift(s.at)
		x.spans = append(x.spans, s)
	}
	if len(x.spans) == 0 {
		return nil, nil
	}
	return x, nil
}

// prefixed is say with "name: " before each message.
func prefixed(say func(string, ...any), name string) func(string, ...any) {
	return func(format string, args ...any) { say("%s: "+format, append([]any{name}, args...)...) }
}

// close removes the plain data files.
func (x *initrdExpansion) close() {
	if x == nil {
		return
	}
	for _, s := range x.spans {
		s.plain.Close()
		os.Remove(s.plain.Name())
	}
}

// growth is how many bytes longer the stream is with the spans expanded.
func (x *initrdExpansion) growth() int64 {
	return x.growthBefore(math.MaxInt64)
}

// growthBefore is how many bytes longer the stream is, before offset at of the unexpanded
// file, with the spans that end there expanded (0 for a nil x).
func (x *initrdExpansion) growthBefore(at int64) int64 {
	if x == nil {
		return 0
	}
	var n int64
	for _, s := range x.spans {
		if s.at+s.size <= at {
			n += s.plainSize - s.size
		}
	}
	return n
}

// writer returns a writer that passes the stream written to it on to w with each span's
// bytes replaced by its plain data; finish checks that every span was passed.
func (x *initrdExpansion) writer(w io.Writer) *spliceWriter {
	return &spliceWriter{w: w, spans: x.spans}
}

// expand runs write, which writes the unexpanded stream's expansion (size bytes) to the writer
// it is given, with x's spans expanded in it too (nil x: none), and returns the stream's size.
func (x *initrdExpansion) expand(w io.Writer, write func(io.Writer) (int64, error)) (int64, error) {
	if x == nil {
		return write(w)
	}
	sw := x.writer(w)
	n, err := write(sw)
	if err != nil {
		return 0, err
	}
	if err := sw.finish(); err != nil {
		return 0, err
	}
	return n + x.growth(), nil
}

// step returns the gzip-spans step and its blob (the spans' reconstruction data one after the
// other), stored in blobDir.
func (x *initrdExpansion) step(blobDir string) (rehydrate.Step, *blob, error) {
	var p rehydrate.GzipSpansParams
	var data []byte
	for _, s := range x.spans {
		p.Spans = append(p.Spans, rehydrate.GzipSpan{Offset: s.expandedAt, Size: s.size, Expanded: s.plainSize, Recon: int64(len(s.recon))})
		data = append(data, s.recon...)
	}
	pj, err := json.Marshal(&p)
	if err != nil {
		return rehydrate.Step{}, nil, err
	}
	b, err := dataBlob(blobDir, data)
	if err != nil {
		return rehydrate.Step{}, nil, fmt.Errorf("initramfs reconstruction data: %w", err)
	}
	return rehydrate.Step{Op: rehydrate.OpGzipSpans, Blob: b.digest, Params: pj}, b, nil
}

// spliceWriter replaces each span's bytes of the stream written through it (at expandedAt,
// size bytes) by the span's plain data.
type spliceWriter struct {
	w     io.Writer
	pos   int64
	spans []*initrdSpan
}

func (s *spliceWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if len(s.spans) == 0 {
			_, err := s.w.Write(p)
			s.pos += int64(len(p))
			return total, err
		}
		sp := s.spans[0]
		if s.pos < sp.expandedAt {
			n := min(int64(len(p)), sp.expandedAt-s.pos)
			if _, err := s.w.Write(p[:n]); err != nil {
				return 0, err
			}
			p, s.pos = p[n:], s.pos+n
			continue
		}
		if s.pos == sp.expandedAt {
			if _, err := io.Copy(s.w, io.NewSectionReader(sp.plain, 0, sp.plainSize)); err != nil {
				return 0, fmt.Errorf("initramfs plain data: %w", err)
			}
		}
		n := min(int64(len(p)), sp.expandedAt+sp.size-s.pos)
		p, s.pos = p[n:], s.pos+n
		if s.pos == sp.expandedAt+sp.size {
			s.spans = s.spans[1:]
		}
	}
	return total, nil
}

// finish reports a span the stream did not reach.
func (s *spliceWriter) finish() error {
	if len(s.spans) > 0 {
		return errors.New("the expanded stream ended before an initramfs span: the spans do not fit the ISO")
	}
	return nil
}

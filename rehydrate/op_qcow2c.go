package rehydrate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"slices"
	"sort"

	"github.com/rehydrator/rehydrator/internal/workpool"
	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/reflate"
)

// OpQcow2Compressed writes the guest view as a qcow2 with compressed clusters (qemu-img
// convert -c, nutanix's image) from a plan blob (Step.Blob, made by EncodeQcow2c): every byte
// of the file outside the compressed clusters' deflate streams verbatim (header, L1, L2 and
// refcount tables: the L2 entries say where each stream sits), and per compressed cluster its
// host offset and reflate's reconstruction data, which with the guest cluster gives the
// stream bit for bit. A cluster whose stream reflate could not predict cheaply is in the
// verbatim bytes instead. Streams are rebuilt on every CPU, a bounded number at a time; the
// guest is read once, forward, so the streams must be in guest order in the file, as qemu-img
// writes them.
const OpQcow2Compressed = "qcow2-compressed"

const qcMagic = "RQC\x01"

// Qcow2cPiece is one guest cluster in the file: a compressed cluster's stream at Host, Stream
// bytes long, rebuilt from guest cluster Cluster and Recon; or, when Raw, the first Stream
// bytes of the cluster as they are (a cluster qemu did not compress).
type Qcow2cPiece struct {
	Host, Cluster, Stream int64
	Recon                 []byte
	Raw                   bool
}

// Qcow2cVerbatim is a run of file bytes kept as they are.
type Qcow2cVerbatim struct {
	Host int64
	Data []byte
}

// Qcow2cPlan is a parsed plan blob.
type Qcow2cPlan struct {
	FileSize, GuestSize int64
	ClusterBits         uint
	// items in host order: a piece or verbatim bytes each.
	items []qcItem
}

type qcItem struct {
	host  int64
	data  []byte       // verbatim
	piece *Qcow2cPiece // or a piece
}

func (it *qcItem) len() int64 {
	if it.piece != nil {
		return it.piece.Stream
	}
	return int64(len(it.data))
}

// EncodeQcow2c makes a plan blob. verbatim and pieces may come in any order; together they
// must not overlap and must lie inside fileSize, and the pieces' clusters must rise with
// their host offsets.
func EncodeQcow2c(fileSize, guestSize int64, clusterBits uint, verbatim []Qcow2cVerbatim, pieces []Qcow2cPiece) ([]byte, error) {
	p := &Qcow2cPlan{FileSize: fileSize, GuestSize: guestSize, ClusterBits: clusterBits}
	for i := range verbatim {
		if len(verbatim[i].Data) > 0 {
			p.items = append(p.items, qcItem{host: verbatim[i].Host, data: verbatim[i].Data})
		}
	}
	for i := range pieces {
		p.items = append(p.items, qcItem{host: pieces[i].Host, piece: &pieces[i]})
	}
	sortItems(p.items)
	if err := p.check(); err != nil {
		return nil, err
	}
	out := []byte(qcMagic)
	out = binary.AppendUvarint(out, uint64(fileSize))
	out = binary.AppendUvarint(out, uint64(guestSize))
	out = append(out, byte(clusterBits))
	out = binary.AppendUvarint(out, uint64(len(p.items)))
	pos, next := int64(0), int64(0)
	for _, it := range p.items {
		out = binary.AppendUvarint(out, uint64(it.host-pos))
		if it.piece == nil {
			out = append(out, 0)
			out = binary.AppendUvarint(out, uint64(len(it.data)))
			out = append(out, it.data...)
		} else if pc := it.piece; pc.Raw {
			out = append(out, 2)
			out = binary.AppendVarint(out, pc.Cluster-next)
			out = binary.AppendUvarint(out, uint64(pc.Stream))
			next = pc.Cluster + 1
		} else {
			out = append(out, 1)
			out = binary.AppendVarint(out, pc.Cluster-next)
			out = binary.AppendUvarint(out, uint64(pc.Stream))
			out = binary.AppendUvarint(out, uint64(len(pc.Recon)))
			out = append(out, pc.Recon...)
			next = pc.Cluster + 1
		}
		pos = it.host + it.len()
	}
	return binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out)), nil
}

func sortItems(items []qcItem) {
	sort.SliceStable(items, func(a, b int) bool { return items[a].host < items[b].host })
}

var errQcPlan = errors.New("qcow2-compressed plan")

// maxStash bounds the guest clusters held in memory for pieces that come after the guest
// stream has passed them: qemu-img convert writes clusters it could not compress when their
// turn comes, after some compressed ones that follow them in the guest.
const maxStash = 64 << 20

// check: items in host order, not overlapping, inside the file; each cluster inside the
// guest, at most once, and those out of guest order few enough to hold in memory.
func (p *Qcow2cPlan) check() error {
	if p.ClusterBits < 9 || p.ClusterBits > 21 || p.FileSize < 0 || p.GuestSize < 0 {
		return fmt.Errorf("%w: cluster bits %d, file size %d, guest size %d", errQcPlan, p.ClusterBits, p.FileSize, p.GuestSize)
	}
	clusters := (p.GuestSize + 1<<p.ClusterBits - 1) >> p.ClusterBits
	pos := int64(0)
	seen := map[int64]bool{}
	for i, it := range p.items {
		if it.host < pos || it.len() <= 0 || it.host+it.len() > p.FileSize {
			return fmt.Errorf("%w: item %d at %d (%d bytes) overlaps the one before or leaves the %d-byte file", errQcPlan, i, it.host, it.len(), p.FileSize)
		}
		if pc := it.piece; pc != nil {
			if pc.Cluster < 0 || pc.Cluster >= clusters || seen[pc.Cluster] || (pc.Raw && pc.Stream > 1<<p.ClusterBits) {
				return fmt.Errorf("%w: item %d: guest cluster %d twice or past the guest's %d", errQcPlan, i, pc.Cluster, clusters)
			}
			seen[pc.Cluster] = true
		}
		pos = it.host + it.len()
	}
	if n := int64(len(p.stashed())); n<<p.ClusterBits > maxStash {
		return fmt.Errorf("%w: %d guest clusters out of order, more than the %d bytes held in memory", errQcPlan, n, maxStash)
	}
	return nil
}

// stashed lists the clusters whose pieces come after the guest stream has passed them.
func (p *Qcow2cPlan) stashed() map[int64]bool {
	out := map[int64]bool{}
	next := int64(0)
	for _, it := range p.items {
		if pc := it.piece; pc != nil {
			if pc.Cluster < next {
				out[pc.Cluster] = true
			}
			next = max(next, pc.Cluster+1)
		}
	}
	return out
}

// OutOfOrder says how many of the pieces' clusters come after the guest stream has passed
// them (each is held in memory until then).
func (p *Qcow2cPlan) OutOfOrder() int { return len(p.stashed()) }

// ParseQcow2c parses a plan blob.
func ParseQcow2c(b []byte) (*Qcow2cPlan, error) {
	bad := func(what string) error {
		return fmt.Errorf("%w: %s (the blob is damaged: rebuild the image)", errQcPlan, what)
	}
	if !bytes.HasPrefix(b, []byte(qcMagic)) || len(b) < len(qcMagic)+4 {
		return nil, bad("no RQC1 magic")
	}
	// The verbatim bytes are written as they are: the checksum keeps a damaged plan from
	// writing a wrong file.
	sum := binary.LittleEndian.Uint32(b[len(b)-4:])
	if b = b[:len(b)-4]; crc32.ChecksumIEEE(b) != sum {
		return nil, bad("checksum mismatch")
	}
	b = b[len(qcMagic):]
	uv := func() (int64, bool) {
		v, k := binary.Uvarint(b)
		if k <= 0 || v > 1<<62 {
			return 0, false
		}
		b = b[k:]
		return int64(v), true
	}
	sv := func() (int64, bool) {
		v, k := binary.Varint(b)
		if k <= 0 || v > 1<<40 || v < -1<<40 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	take := func(n int64) ([]byte, bool) {
		if n > int64(len(b)) {
			return nil, false
		}
		out := b[:n:n]
		b = b[n:]
		return out, true
	}
	p := &Qcow2cPlan{}
	fs, ok1 := uv()
	gs, ok2 := uv()
	if !ok1 || !ok2 || len(b) < 1 {
		return nil, bad("sizes")
	}
	p.FileSize, p.GuestSize, p.ClusterBits = fs, gs, uint(b[0])
	b = b[1:]
	n, ok := uv()
	if !ok || n > int64(len(b)) {
		return nil, bad("item count")
	}
	p.items = make([]qcItem, 0, n)
	pos, next := int64(0), int64(0)
	for i := int64(0); i < n; i++ {
		gap, ok := uv()
		if !ok || len(b) < 1 {
			return nil, bad(fmt.Sprintf("item %d", i))
		}
		kind := b[0]
		b = b[1:]
		it := qcItem{host: pos + gap}
		switch kind {
		case 0:
			l, ok := uv()
			d, ok2 := take(l)
			if !ok || !ok2 {
				return nil, bad(fmt.Sprintf("item %d: verbatim bytes", i))
			}
			it.data = d
		case 1:
			dc, ok1 := sv()
			sl, ok2 := uv()
			rl, ok3 := uv()
			r, ok4 := take(rl)
			if !ok1 || !ok2 || !ok3 || !ok4 {
				return nil, bad(fmt.Sprintf("item %d: compressed cluster", i))
			}
			it.piece = &Qcow2cPiece{Host: it.host, Cluster: next + dc, Stream: sl, Recon: r}
			next = it.piece.Cluster + 1
		case 2:
			dc, ok1 := sv()
			sl, ok2 := uv()
			if !ok1 || !ok2 {
				return nil, bad(fmt.Sprintf("item %d: cluster", i))
			}
			it.piece = &Qcow2cPiece{Host: it.host, Cluster: next + dc, Stream: sl, Raw: true}
			next = it.piece.Cluster + 1
		default:
			return nil, bad(fmt.Sprintf("item %d of kind %d", i, kind))
		}
		p.items = append(p.items, it)
		pos = it.host + it.len()
	}
	if len(b) != 0 {
		return nil, bad("bytes after the last item")
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, nil
}

// Write writes the qcow2 file from the guest stream (read forward once, GuestSize bytes at
// most) on up to workers goroutines.
func (p *Qcow2cPlan) Write(w io.Writer, guest io.Reader, workers int) error {
	workers = max(workers, 1)
	cs := int64(1) << p.ClusterBits
	type result struct {
		out []byte
		err error
	}
	type slot struct {
		it   *qcItem
		done chan result
	}
	// Clusters are read in order and handed to the workers; the slots keep the file order.
	// At most 2*workers streams are in flight: memory stays a few clusters per CPU.
	slots := make(chan slot, 2*workers)
	work := make(chan func(), workers)
	stop := make(chan struct{})
	defer close(stop)
	for range workers {
		go func() {
			for f := range work {
				f()
			}
		}()
	}
	go func() {
		defer close(slots)
		defer close(work)
		later := p.stashed()
		stash := map[int64][]byte{}
		next := int64(0) // guest cluster the stream is at
		// cluster reads guest cluster c, keeping those passed on the way that a later piece needs.
		cluster := func(c int64) ([]byte, error) {
			if c < next {
				b, ok := stash[c]
				if !ok {
					return nil, errors.New("not kept in memory") // check forbids it
				}
				delete(stash, c)
				return b, nil
			}
			for ; next <= c; next++ {
				if next != c && !later[next] {
					if err := skipClusters(guest, 1, min(cs, p.GuestSize-next*cs)); err != nil {
						return nil, err
					}
					continue
				}
				buf := make([]byte, cs)
				if err := readCluster(guest, buf, next, p.GuestSize, cs); err != nil {
					return nil, err
				}
				if next == c {
					next++
					return buf, nil
				}
				stash[next] = buf
			}
			return nil, errors.New("not reached") // the loop returns at c
		}
		for i := range p.items {
			it := &p.items[i]
			s := slot{it: it, done: make(chan result, 1)}
			if pc := it.piece; pc != nil {
				buf, err := cluster(pc.Cluster)
				if err != nil {
					s.done <- result{err: fmt.Errorf("guest cluster %d: %w", pc.Cluster, err)}
				} else if pc.Raw {
					s.done <- result{out: buf[:pc.Stream]}
				} else {
					f := func() {
						var out bytes.Buffer
						out.Grow(int(pc.Stream))
						err := reflate.RebuildStream(&out, bytes.NewReader(buf), pc.Recon)
						if err == nil && int64(out.Len()) != pc.Stream {
							err = fmt.Errorf("rebuilt %d bytes, the file holds %d", out.Len(), pc.Stream)
						}
						if err != nil {
							err = fmt.Errorf("compressed cluster for guest offset %#x: %w", pc.Cluster*cs, err)
						}
						s.done <- result{out.Bytes(), err}
					}
					select {
					case work <- f:
					case <-stop:
						return
					}
				}
			} else {
				s.done <- result{out: it.data}
			}
			select {
			case slots <- s:
			case <-stop:
				return
			}
		}
	}()
	bw := bufio.NewWriterSize(w, 1<<20)
	pos := int64(0)
	for s := range slots {
		r := <-s.done
		if r.err != nil {
			return r.err
		}
		if err := writeZeros(bw, s.it.host-pos); err != nil {
			return err
		}
		if _, err := bw.Write(r.out); err != nil {
			return err
		}
		pos = s.it.host + int64(len(r.out))
	}
	if err := writeZeros(bw, p.FileSize-pos); err != nil {
		return err
	}
	return bw.Flush()
}

var zeroBlock = make([]byte, 64<<10)

func writeZeros(w io.Writer, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroBlock)))
		if _, err := w.Write(zeroBlock[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// skipClusters drops n clusters of the guest stream.
func skipClusters(r io.Reader, n, cs int64) error {
	if n <= 0 {
		return nil
	}
	_, err := io.CopyN(io.Discard, r, n*cs)
	return err
}

// readCluster reads guest cluster c; the last cluster of a guest that is not a whole number
// of clusters is padded with zeros, as qemu compressed it.
func readCluster(r io.Reader, buf []byte, c, guestSize, cs int64) error {
	want := min(cs, guestSize-c*cs)
	if _, err := io.ReadFull(r, buf[:want]); err != nil {
		return err
	}
	clear(buf[want:])
	return nil
}

func init() {
	register(opSpec[blobParams]{
		name:   OpQcow2Compressed,
		params: blobOf,
		str:    blobString,
		blobs:  blobParams.list,
		apply: func(c *call, p blobParams, in *value) (*value, error) {
			v, err := c.blob(p.Digest)
			if err != nil {
				return nil, fmt.Errorf("qcow2-compressed plan: %w", err)
			}
			b, err := io.ReadAll(io.LimitReader(v.stream(), maxGzipBlob+1))
			v.close()
			if err != nil {
				return nil, fmt.Errorf("qcow2-compressed plan %s: %w", ShortDigest(p.Digest), err)
			}
			if len(b) > maxGzipBlob {
				return nil, fmt.Errorf("qcow2-compressed plan %s is over %d bytes", ShortDigest(p.Digest), maxGzipBlob)
			}
			plan, err := ParseQcow2c(b)
			if err != nil {
				return nil, err
			}
			return pipe(in, in.key+"|"+OpQcow2Compressed+":"+p.Digest, plan.FileSize, func(w io.Writer, r io.Reader) error {
				return plan.Write(w, r, runtime.NumCPU())
			}), nil
		},
	})
}

// ErrNoCompressed marks a qcow2 without compressed clusters: qcow2-encode's business.
var ErrNoCompressed = errors.New("qcow2 has no compressed clusters")

// Qcow2cStats says what SplitQcow2c made of a file.
type Qcow2cStats struct {
	Clusters, Rebuilt int   // compressed clusters, and those reflate rebuilds
	Raw               int   // uncompressed clusters copied from the guest
	Recon, Verbatim   int64 // bytes of reconstruction data, and of the file kept verbatim
}

// qcMergeZeros is the shortest run of zeros that splits the verbatim bytes in two (a shorter
// one costs less inline than a new run's header).
const qcMergeZeros = 32

// SplitQcow2c makes the plan blob of qcow2-compressed for the size-byte qcow2 file in r: each
// compressed cluster's deflate stream split by reflate on jobs goroutines (kept verbatim where
// its reconstruction data would be over half the stream, or it does not split), everything
// else of the file, less its runs of zeros, verbatim.
func SplitQcow2c(ctx context.Context, r io.ReaderAt, size int64, jobs int) ([]byte, Qcow2cStats, error) {
	var st Qcow2cStats
	img, err := qcow2.Open(r, size)
	if err != nil {
		return nil, st, err
	}
	cc, err := img.CompressedClusters()
	if err != nil {
		return nil, st, err
	}
	if len(cc) == 0 {
		return nil, st, ErrNoCompressed
	}
	st.Clusters = len(cc)
	cb := uint(img.Header().ClusterBits)
	cs := int64(1) << cb
	pieces := make([]Qcow2cPiece, len(cc))
	err = workpool.ForEach(ctx, len(cc), jobs, func(i int) error {
		c := cc[i]
		stream := make([]byte, c.Len)
		if _, err := r.ReadAt(stream, c.Host); err != nil {
			return err
		}
		var plain bytes.Buffer
		recon, n, err := reflate.SplitStream(bytes.NewReader(stream), &plain)
		if err != nil || n != c.Len || int64(len(recon))*2 > c.Len {
			return nil // kept verbatim
		}
		guest := make([]byte, cs)
		if _, err := img.ReadAt(guest[:min(cs, img.Size()-c.Guest)], c.Guest); err != nil {
			return err
		}
		if !bytes.Equal(plain.Bytes(), guest) {
			return nil
		}
		pieces[i] = Qcow2cPiece{Host: c.Host, Cluster: c.Guest >> cb, Stream: c.Len, Recon: recon}
		return nil
	})
	if err != nil {
		return nil, st, err
	}
	raw, err := rawClusters(r, size, img)
	if err != nil {
		return nil, st, err
	}
	pieces = append(pieces, raw...)
	sort.Slice(pieces, func(a, b int) bool { return pieces[a].Host < pieces[b].Host })
	// A piece overlapping the one before (a damaged file) stays in the verbatim bytes; so do
	// the pieces out of guest order when there are too many to hold in memory.
	var kept []Qcow2cPiece
	for _, p := range pieces {
		if p.Stream == 0 {
			continue
		}
		if k := len(kept) - 1; k >= 0 && p.Host < kept[k].Host+kept[k].Stream {
			continue
		}
		kept = append(kept, p)
	}
	late := map[int64]bool{}
	next := int64(0)
	for _, p := range kept {
		if p.Cluster < next {
			late[p.Cluster] = true
		}
		next = max(next, p.Cluster+1)
	}
	if int64(len(late))<<cb > maxStash {
		kept = slices.DeleteFunc(kept, func(p Qcow2cPiece) bool { return late[p.Cluster] })
	}
	for _, p := range kept {
		if p.Raw {
			st.Raw++
		} else {
			st.Rebuilt++
			st.Recon += int64(len(p.Recon))
		}
	}
	var verb []Qcow2cVerbatim
	pos := int64(0)
	for i := 0; i <= len(kept); i++ {
		end := size
		if i < len(kept) {
			end = kept[i].Host
		}
		v, err := nonZeroRuns(r, pos, end)
		if err != nil {
			return nil, st, err
		}
		for _, x := range v {
			st.Verbatim += int64(len(x.Data))
		}
		verb = append(verb, v...)
		if i < len(kept) {
			pos = kept[i].Host + kept[i].Stream
		}
	}
	blob, err := EncodeQcow2c(size, img.Size(), cb, verb, kept)
	return blob, st, err
}

// nonZeroRuns reads [from, to) of r and returns its bytes less the runs of at least
// qcMergeZeros zeros.
func nonZeroRuns(r io.ReaderAt, from, to int64) ([]Qcow2cVerbatim, error) {
	var out []Qcow2cVerbatim
	buf := make([]byte, 1<<20)
	var cur *Qcow2cVerbatim
	zeros := 0 // zeros at the end of cur, not yet known to split it
	for off := from; off < to; {
		n := int(min(int64(len(buf)), to-off))
		if _, err := r.ReadAt(buf[:n], off); err != nil {
			return nil, err
		}
		for i, c := range buf[:n] {
			if c == 0 {
				if cur != nil {
					zeros++
					if zeros >= qcMergeZeros {
						cur.Data = cur.Data[:len(cur.Data)-zeros+1]
						out = append(out, *cur)
						cur, zeros = nil, 0
						continue
					}
					cur.Data = append(cur.Data, 0)
				}
				continue
			}
			if cur == nil {
				cur = &Qcow2cVerbatim{Host: off + int64(i)}
			}
			cur.Data = append(cur.Data, c)
			zeros = 0
		}
		off += int64(n)
	}
	if cur != nil {
		cur.Data = cur.Data[:len(cur.Data)-zeros]
		out = append(out, *cur)
	}
	return out, nil
}

// rawClusters lists the clusters qemu stored uncompressed whose bytes in the file are the
// guest's (all of them, in a sound file), from the L1 and L2 tables.
func rawClusters(r io.ReaderAt, size int64, img *qcow2.Image) ([]Qcow2cPiece, error) {
	h := img.Header()
	cb := uint(h.ClusterBits)
	cs := int64(1) << cb
	l2Bits := cb - 3
	if h.IncompatibleFeatures&qcow2.IncompatExtendedL2 != 0 || h.L1Size > 1<<24 {
		return nil, nil
	}
	const offMask = 0x00fffffffffffe00
	l1 := make([]byte, 8*int64(h.L1Size))
	if _, err := r.ReadAt(l1, int64(h.L1TableOffset)); err != nil {
		return nil, fmt.Errorf("qcow2 L1 table: %w", err)
	}
	clusters := (img.Size() + cs - 1) >> cb
	var out []Qcow2cPiece
	l2 := make([]byte, cs)
	file := make([]byte, cs)
	guest := make([]byte, cs)
	for i := int64(0); i < int64(h.L1Size); i++ {
		t := int64(binary.BigEndian.Uint64(l1[8*i:]) & offMask)
		if t == 0 {
			continue
		}
		if _, err := r.ReadAt(l2, t); err != nil {
			return nil, fmt.Errorf("qcow2 L2 table at %#x: %w", t, err)
		}
		for k := int64(0); k < cs/8; k++ {
			e := binary.BigEndian.Uint64(l2[8*k:])
			c := i<<l2Bits | k
			host := int64(e & offMask)
			if e&(1<<62) != 0 || e&1 != 0 || host == 0 || c >= clusters || host >= size {
				continue
			}
			n := min(cs, size-host)
			if _, err := r.ReadAt(file[:n], host); err != nil {
				return nil, err
			}
			clear(guest)
			if _, err := img.ReadAt(guest[:min(cs, img.Size()-c<<cb)], c<<cb); err != nil {
				return nil, err
			}
			if bytes.Equal(file[:n], guest[:n]) {
				out = append(out, Qcow2cPiece{Host: host, Cluster: c, Stream: n, Raw: true})
			}
		}
	}
	return out, nil
}

package dehydrate

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/rehydrator/rehydrator/internal/diskview"
	"github.com/rehydrator/rehydrator/ociarchive"
	"github.com/rehydrator/rehydrator/qcow2"
	"github.com/rehydrator/rehydrator/reflate"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/zipmember"
)

// The routes for files whose bulk is deflate made by producers we do not link, or a container
// around such a file (issue 11): a gzip file (gcp's .tar.gz, the kubevirt layer), a tar with
// one big member (kubevirt's .ociarchive, the layer's own tar), a qcow2 with compressed
// clusters (nutanix). Each unwraps one level and plans what is inside as if it were an
// artifact of its own, with every route (so gcp's tar is the gnu-sparse-tar format route's,
// and the qcow2 in kubevirt's layer a delta against the baseline), then appends the step that
// wraps it again.

// subRoutes is the planner's table, for the planning of what a container holds (set in init:
// a route that refers to the table in its initializer would be an initialization cycle).
var subRoutes []route

func init() { subRoutes = routes }

// maxNesting bounds how deep containers nest (ociarchive -> gzip -> tar -> qcow2 is 3).
const maxNesting = 4

// nestMark separates the levels in a nested job's artifact ID.
const nestMark = "#"

// tarMinMember is the least size of the member a tar route plans on its own: smaller ones are
// not worth a level of nesting.
const tarMinMember = 1 << 20

// deflated dispatches on the file's contents. A file that a format of internal/diskview
// with steps claims (OVA, sparse tar, VMDK, ...) is formatSteps' business; a qcow2 without
// compressed clusters the qcow2 routes'.
func deflated(ctx context.Context, j *job, _ *candidate) (*candidate, error) {
	if !j.hasBase() || !j.isDisk() || strings.Count(j.art.ID, nestMark) >= maxNesting {
		return nil, nil
	}
	f, size, err := openSized(j.file)
	if err != nil {
		return nil, err
	}
	var head [4]byte
	n, _ := f.ReadAt(head[:], 0)
	claimed := diskview.Sniff(f, size)
	f.Close()
	var c *candidate
	var why string
	start := time.Now()
	switch {
	case n >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		c, why, err = gzipCandidate(ctx, j)
	case zipmember.Sniff(head[:n]):
		c, why, err = zipCandidate(ctx, j)
	case claimed != nil && claimed.Name == "qcow2":
		c, why, err = qcow2cCandidate(ctx, j)
	case claimed != nil:
		return nil, nil
	default:
		c, why, err = tarCandidate(ctx, j)
	}
	if err != nil || c == nil {
		if why != "" {
			j.say("%s: %s", j.art.Name, why)
		}
		return nil, err
	}
	if !strings.Contains(j.art.ID, nestMark) {
		// The top level proves the whole chain, so that a wrong step costs this candidate, not
		// the build's self-check.
		if err := j.prove(ctx, c); err != nil {
			j.say("%s: %s: %v", j.art.Name, c.method(j.nameOf), err)
			j.discard(c, nil)
			return nil, nil
		}
	}
	c.took = time.Since(start)
	c.final = true
	return c, nil
}

// nested plans file, which this job's file holds, as an artifact of its own. It returns nil
// when that would store it whole, or it has no baseline route.
func (j *job) nested(ctx context.Context, file, what string) (*candidate, error) {
	f, size, err := openSized(file)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	_, err = io.Copy(h, bufio.NewReaderSize(f, 1<<20))
	f.Close()
	if err != nil {
		return nil, err
	}
	art := *j.art
	art.ID += nestMark + what
	art.Name += nestMark + what
	art.SHA256, art.Size, art.Steps = hex.EncodeToString(h.Sum(nil)), size, nil
	sub := &job{planner: j.planner, a: j.a, art: &art, file: file, base: j.base}
	c, err := sub.choose(ctx, subRoutes)
	if err != nil {
		return nil, err
	}
	if !c.onBaseline {
		j.discard(c, nil)
		return nil, nil
	}
	c.took = sub.took
	return c, nil
}

// wrap is c followed by step and the blobs it reads.
func wrap(c *candidate, step rehydrate.Step, blobs ...*blob) *candidate {
	return &candidate{steps: append(slices.Clone(c.steps), step), onBaseline: c.onBaseline,
		blobs: append(slices.Clone(c.blobs), blobs...), took: c.took}
}

// tempIn makes a temporary file in the blob directory, removed by the returned func.
func (j *job) tempIn(pattern string) (*os.File, func(), error) {
	f, err := os.CreateTemp(j.blobDir, pattern)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close(); os.Remove(f.Name()) }, nil
}

// gzipCandidate: a gzip file as its plain data, planned on its own, then the gzip step with
// the reconstruction blob.
func gzipCandidate(ctx context.Context, j *job) (*candidate, string, error) {
	in, err := os.Open(j.file)
	if err != nil {
		return nil, "", err
	}
	defer in.Close()
	plain, done, err := j.tempIn(".gunzip-*")
	if err != nil {
		return nil, "", err
	}
	defer done()
	bw := bufio.NewWriterSize(plain, 1<<20)
	recon, _, err := rehydrate.GzipSplit(in, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, fmt.Sprintf("gzip not split (%v): left to the other routes", err), nil
	}
	rb, err := dataBlob(j.blobDir, recon)
	if err != nil {
		return nil, "", err
	}
	inner, err := j.nested(ctx, plain.Name(), "gunzip")
	if err != nil || inner == nil {
		os.Remove(rb.path)
		return nil, "its plain data has no route from the baseline", err
	}
	return wrap(inner, rehydrate.Step{Op: rehydrate.OpGzip, Blob: rb.digest}, rb), "", nil
}

// zipCandidate: a one-member zip archive (hyperv's .vhdx.zip, when the stream gives only the
// archive's sha256) as the member's contents, planned on its own, then the zip step with the
// archive's bytes around the member verbatim and, for a deflated member, reflate's data.
func zipCandidate(ctx context.Context, j *job) (*candidate, string, error) {
	f, size, err := openSized(j.file)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	a, err := zipmember.Open(f, size)
	if err != nil {
		return nil, fmt.Sprintf("zip not taken apart (%v): left to the other routes", err), nil
	}
	layout, err := a.Layout()
	if err != nil {
		return nil, fmt.Sprintf("zip layout: %v", err), nil
	}
	lj, err := json.Marshal(layout)
	if err != nil {
		return nil, "", err
	}
	member, done, err := j.tempIn(".unzip-*")
	if err != nil {
		return nil, "", err
	}
	defer done()
	bw := bufio.NewWriterSize(member, 1<<20)
	step := rehydrate.Step{Op: rehydrate.OpZip, Params: lj}
	var blobs []*blob
	switch a.Member.Method {
	case zipmember.Store:
		_, err = io.Copy(bw, a.Raw())
	case zipmember.Deflate:
		var recon []byte
		if recon, _, err = reflate.SplitStream(bufio.NewReaderSize(a.Raw(), 1<<20), bw); err != nil {
			return nil, fmt.Sprintf("zip member's deflate not split (%v): left to the other routes", err), nil
		}
		rb, err := dataBlob(j.blobDir, recon)
		if err != nil {
			return nil, "", err
		}
		step.Blob, blobs = rb.digest, []*blob{rb}
	default:
		return nil, fmt.Sprintf("zip member method %d: left to the other routes", a.Member.Method), nil
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return nil, "", err
	}
	inner, err := j.nested(ctx, member.Name(), "unzip")
	if err != nil || inner == nil {
		for _, b := range blobs {
			os.Remove(b.path)
		}
		return nil, "the zip member has no route from the baseline", err
	}
	return wrap(inner, step, blobs...), "", nil
}

// tarCandidate: a tar with one big member (an OCI archive and its layer) as that member,
// planned on its own, then the ociarchive step with every other byte of the tar in its
// layout.
func tarCandidate(ctx context.Context, j *job) (*candidate, string, error) {
	f, size, err := openSized(j.file)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	a, err := ociarchive.Open(f, size)
	if errors.Is(err, ociarchive.ErrNotTar) {
		return nil, "", nil
	}
	if err != nil {
		return nil, fmt.Sprintf("tar not taken apart: %v", err), nil
	}
	var big *ociarchive.Member
	for i := range a.Members {
		m := &a.Members[i]
		if (m.Typeflag == '0' || m.Typeflag == 0) && m.Size >= tarMinMember && (big == nil || m.Size > big.Size) {
			big = m
		}
	}
	if big == nil {
		return nil, "", nil
	}
	layout, err := a.Layout(big.Name)
	if err != nil {
		return nil, fmt.Sprintf("tar layout: %v", err), nil
	}
	lj, err := json.Marshal(layout)
	if err != nil {
		return nil, "", err
	}
	if int64(len(lj)) > size/4 {
		return nil, "", nil // mostly small members: nothing to gain
	}
	mf, done, err := j.tempIn(".member-*")
	if err != nil {
		return nil, "", err
	}
	defer done()
	if _, err := io.Copy(mf, a.Data(big)); err != nil {
		return nil, "", err
	}
	inner, err := j.nested(ctx, mf.Name(), big.Name)
	if err != nil || inner == nil {
		return nil, fmt.Sprintf("tar member %s has no route from the baseline", big.Name), err
	}
	return wrap(inner, rehydrate.Step{Op: rehydrate.OpOCIArchive, Params: lj}), "", nil
}

// prove runs c from the baseline and checks the artifact's SHA-256.
func (j *job) prove(ctx context.Context, c *candidate) error {
	blobs := LocalBlobs{}
	j.mu.Lock()
	for d, p := range j.res.BlobPaths {
		blobs[d] = p
	}
	j.mu.Unlock()
	for _, b := range c.blobs {
		blobs[b.digest] = b.path
	}
	steps := append(slices.Clone(j.arts[j.base].Steps), c.steps...)
	h := sha256.New()
	n, err := rehydrate.Run(ctx, blobs, nil, steps, h)
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != j.art.SHA256 || n != j.art.Size {
		return fmt.Errorf("makes %d bytes with sha256 %s, not the file", n, got)
	}
	return nil
}

// qcow2cCandidate: a qcow2 with compressed clusters (nutanix) as a delta of guest views, then
// qcow2-compressed with the file's bytes outside the compressed streams verbatim and
// reflate's reconstruction data for each stream.
func qcow2cCandidate(ctx context.Context, j *job) (*candidate, string, error) {
	target, tsize, err := openSized(j.file)
	if err != nil {
		return nil, "", err
	}
	defer target.Close()
	img, err := qcow2.Open(target, tsize)
	if err != nil {
		return nil, "", nil // the qcow2 routes say why
	}
	planBlob, st, err := rehydrate.SplitQcow2c(ctx, target, tsize, j.opt.Jobs)
	if errors.Is(err, rehydrate.ErrNoCompressed) {
		return nil, "", nil
	}
	if err != nil {
		return nil, fmt.Sprintf("compressed clusters not split (%v): left to the other routes", err), nil
	}
	pb, err := dataBlob(j.blobDir, planBlob)
	if err != nil {
		return nil, "", err
	}
	j.say("%s: %d of %d compressed clusters rebuilt by reflate (%d bytes of reconstruction data), %d uncompressed ones copied from the guest, %d bytes kept verbatim",
		j.art.Name, st.Rebuilt, st.Clusters, st.Recon, st.Raw, st.Verbatim)
	base, err := openBaseline(j.files[j.base])
	if err != nil {
		return nil, "", err
	}
	defer base.Close()
	c, err := deltaCandidate(ctx, j, base.guest, base.guest.Size(), img, img.Size(), decoded,
		rehydrate.Step{Op: rehydrate.OpQcow2Compressed, Blob: pb.digest})
	if err != nil {
		os.Remove(pb.path)
		return nil, "", err
	}
	c.blobs = append(c.blobs, pb)
	return c, "", nil
}

package rehydrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// OpGzipSpans turns a file some of whose gzip streams were replaced by their plain data back
// into the original: the bytes around the spans verbatim, each span's gzip stream rebuilt bit
// for bit by reflate from its plain data and its reconstruction data. The live ISO's initramfs
// (images/pxeboot/initrd.img, a gzip newc cpio, often after an uncompressed or xz one) is such
// a span, so that the delta before this step sees the cpio's plain files. Step.Blob holds the
// spans' reconstruction data one after the other (GzipSplit's, Recon bytes each).
const OpGzipSpans = "gzip-spans"

// GzipSpan is one gzip stream inside the original file: at Offset, Size bytes long (from its
// first member to the end of the span, trailing bytes included), Expanded bytes of plain data
// in the input, and Recon bytes of the step's blob.
type GzipSpan struct {
	Offset   int64 `json:"offset"`
	Size     int64 `json:"size"`
	Expanded int64 `json:"expanded"`
	Recon    int64 `json:"recon"`
}

// GzipSpansParams list the spans in file order; Blob is Step.Blob.
type GzipSpansParams struct {
	Spans []GzipSpan `json:"spans"`
	Blob  string     `json:"-"`
}

func (p *GzipSpansParams) Validate() error {
	if err := (blobParams{p.Blob}).Validate(); err != nil {
		return err
	}
	if len(p.Spans) == 0 {
		return errors.New("no spans")
	}
	var end, recon int64
	for i, s := range p.Spans {
		switch {
		case s.Offset < end:
			return fmt.Errorf("span %d at %d starts before the end of the one before (%d)", i, s.Offset, end)
		case s.Size <= 0 || s.Expanded < 0 || s.Recon <= 0:
			return fmt.Errorf("span %d at %d: size %d, expanded %d, recon %d; want size and recon positive", i, s.Offset, s.Size, s.Expanded, s.Recon)
		case s.Offset > 1<<62-s.Size || s.Recon > maxGzipBlob-recon:
			return fmt.Errorf("span %d at %d: size %d or recon %d too large", i, s.Offset, s.Size, s.Recon)
		}
		end, recon = s.Offset+s.Size, recon+s.Recon
	}
	return nil
}

func gzipSpansOf(s *Step) (*GzipSpansParams, error) {
	p := &GzipSpansParams{Blob: s.Blob}
	dec := json.NewDecoder(bytes.NewReader(s.Params))
	dec.DisallowUnknownFields()
	return p, dec.Decode(p)
}

func init() {
	register(opSpec[*GzipSpansParams]{
		name:   OpGzipSpans,
		params: gzipSpansOf,
		str: func(s *Step) string {
			p, err := gzipSpansOf(s)
			if err != nil || len(p.Spans) == 0 {
				return blobString(s)
			}
			return fmt.Sprintf("%s (%d spans, the first at %d)", blobString(s), len(p.Spans), p.Spans[0].Offset)
		},
		blobs: func(p *GzipSpansParams) []string { return []string{p.Blob} },
		apply: func(c *call, p *GzipSpansParams, in *value) (*value, error) {
			blob, err := readReconBlob(c, p.Blob)
			if err != nil {
				return nil, err
			}
			return pipe(in, in.key+"|"+OpGzipSpans+":"+p.Blob, -1, func(w io.Writer, r io.Reader) error {
				if err := RestoreGzipSpans(w, r, p.Spans, blob); err != nil {
					return fmt.Errorf("%s: %w", OpGzipSpans, err)
				}
				return nil
			}), nil
		},
	})
}

// RestoreGzipSpans writes the original file from r, in which each span's gzip stream is its
// plain data: verbatim bytes up to each span, the span rebuilt from its Expanded bytes and its
// Recon bytes of blob, verbatim bytes after the last.
func RestoreGzipSpans(w io.Writer, r io.Reader, spans []GzipSpan, blob []byte) error {
	var pos, at int64
	for i, s := range spans {
		if n, err := io.CopyN(w, r, s.Offset-pos); err != nil {
			return fmt.Errorf("input ends after %d of the %d bytes before gzip span %d: %w", pos+n, s.Offset, i, noEOF(err))
		}
		if at+s.Recon > int64(len(blob)) {
			return fmt.Errorf("gzip span %d at %d: the blob holds %d bytes, the spans ask for more (a damaged blob or recipe)", i, s.Offset, len(blob))
		}
		recon := blob[at : at+s.Recon]
		at += s.Recon
		lr := &io.LimitedReader{R: r, N: s.Expanded}
		cw := &countWriter{w: w}
		if err := GzipRebuild(cw, lr, recon); err != nil {
			return fmt.Errorf("gzip span at %d: %w", s.Offset, err)
		}
		if lr.N != 0 || cw.n != s.Size {
			return fmt.Errorf("gzip span at %d: rebuilt %d bytes from %d, the recipe says %d from %d (a damaged blob or recipe)",
				s.Offset, cw.n, s.Expanded-lr.N, s.Size, s.Expanded)
		}
		pos = s.Offset + s.Size
	}
	if at != int64(len(blob)) {
		return fmt.Errorf("the blob holds %d bytes, the spans use %d (a damaged blob or recipe)", len(blob), at)
	}
	_, err := io.Copy(w, r)
	return err
}

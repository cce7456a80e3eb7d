package rehydrate

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// gzipSpansCase is a file with two gzip streams made by GNU gzip -9 inside other bytes (as
// the live ISO's initrd.img sits among its other files, the second a cpio-like stream after an
// xz one), the file with the streams expanded, the step and its blob.
func gzipSpansCase(t *testing.T) (file, expanded []byte, step Step, blob []byte) {
	t.Helper()
	one := deflateInput(200 << 10)
	two := deflateInput(70 << 10)
	g1 := runTool(t, one, "gzip", "-9", "-n", "-c")
	g2 := runTool(t, two, "gzip", "-9", "-c")
	x := runTool(t, deflateInput(30<<10), "xz", "--check=crc32", "-c")
	pieces := [][]byte{[]byte(strings.Repeat("head", 1000)), g1, []byte("between"), x, g2}
	var f, e bytes.Buffer
	var p GzipSpansParams
	for _, piece := range pieces {
		if len(piece) < 2 || piece[0] != 0x1f || piece[1] != 0x8b {
			f.Write(piece)
			e.Write(piece)
			continue
		}
		var plain bytes.Buffer
		recon, n, err := GzipSplit(bytes.NewReader(piece), &plain)
		if err != nil || n != int64(len(piece)) {
			t.Fatalf("split: %v (%d of %d bytes)", err, n, len(piece))
		}
		p.Spans = append(p.Spans, GzipSpan{Offset: int64(f.Len()), Size: n, Expanded: int64(plain.Len()), Recon: int64(len(recon))})
		blob = append(blob, recon...)
		f.Write(piece)
		e.Write(plain.Bytes())
	}
	pj, err := json.Marshal(&p)
	if err != nil {
		t.Fatal(err)
	}
	return f.Bytes(), e.Bytes(), Step{Op: OpGzipSpans, Blob: digestOf(blob), Params: pj}, blob
}

// gzipSpansRecipe rehydrates file from the blob expanded through the step.
func gzipSpansRecipe(file, expanded []byte, step Step, blob []byte) (*Recipe, memBlobs) {
	r := &Recipe{SchemaVersion: SchemaVersion,
		Blobs: []Blob{{Digest: digestOf(expanded), Size: int64(len(expanded))}, {Digest: digestOf(blob), Size: int64(len(blob))}},
		Artifacts: []Artifact{{ID: "x86_64/metal/iso/disk", Name: "live.iso", Size: int64(len(file)), SHA256: hexOf(file),
			Steps: []Step{{Op: OpBlob, Blob: digestOf(expanded)}, step}}}}
	r.DeclareFeatures()
	return r, memBlobs{digestOf(expanded): expanded, digestOf(blob): blob}
}

// The gzip streams come back bit for bit around the verbatim bytes.
func TestGzipSpans(t *testing.T) {
	file, expanded, step, blob := gzipSpansCase(t)
	if len(expanded) <= len(file) {
		t.Fatalf("expanded stream %d bytes, the file %d: nothing expanded", len(expanded), len(file))
	}
	var out bytes.Buffer
	var p GzipSpansParams
	if err := json.Unmarshal(step.Params, &p); err != nil {
		t.Fatal(err)
	}
	if err := RestoreGzipSpans(&out, bytes.NewReader(expanded), p.Spans, blob); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), file) {
		t.Fatal("RestoreGzipSpans wrote other bytes")
	}
	r, blobs := gzipSpansRecipe(file, expanded, step, blob)
	got, err := rehydrateOne(t, r, blobs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, file) {
		t.Fatal("the gzip-spans op wrote other bytes")
	}
}

// A damaged input, blob or recipe is a one-line error, never other bytes.
func TestGzipSpansDamaged(t *testing.T) {
	file, expanded, step, blob := gzipSpansCase(t)
	var p GzipSpansParams
	if err := json.Unmarshal(step.Params, &p); err != nil {
		t.Fatal(err)
	}
	with := func(change func(*GzipSpansParams)) Step {
		q := GzipSpansParams{Spans: append([]GzipSpan(nil), p.Spans...)}
		change(&q)
		pj, err := json.Marshal(&q)
		if err != nil {
			t.Fatal(err)
		}
		return Step{Op: OpGzipSpans, Blob: step.Blob, Params: pj}
	}
	flip := bytes.Clone(expanded)
	flip[p.Spans[0].Offset+p.Spans[0].Expanded/2] ^= 0x10
	for name, tc := range map[string]struct {
		expanded []byte
		step     Step
	}{
		"truncated stream":    {expanded[:len(expanded)/2], step},
		"truncated in a span": {expanded[:p.Spans[1].Offset+100], step},
		"changed plain data":  {flip, step},
		"longer plain data":   {expanded, with(func(q *GzipSpansParams) { q.Spans[0].Expanded-- })},
		"wrong size":          {expanded, with(func(q *GzipSpansParams) { q.Spans[1].Size++ })},
		"recon lengths":       {expanded, with(func(q *GzipSpansParams) { q.Spans[0].Recon--; q.Spans[1].Recon++ })},
		"recon past the blob": {expanded, with(func(q *GzipSpansParams) { q.Spans[1].Recon++ })},
		"blob not used":       {expanded, with(func(q *GzipSpansParams) { q.Spans = q.Spans[:1] })},
	} {
		r, blobs := gzipSpansRecipe(file, tc.expanded, tc.step, blob)
		got, err := rehydrateOne(t, r, blobs)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v (%d bytes, same as the file: %v), want a one-line error", name, err, len(got), bytes.Equal(got, file))
		}
	}
}

// Bad parameters are refused with a one-line error naming the op.
func TestGzipSpansBadParams(t *testing.T) {
	const d = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	for _, tc := range []struct{ blob, params string }{
		{d, `{}`}, {d, `{"spans":[]}`}, {"", `{"spans":[{"offset":0,"size":4,"expanded":4,"recon":4}]}`},
		{d, `{"spans":[{"offset":-1,"size":4,"expanded":4,"recon":4}]}`},
		{d, `{"spans":[{"offset":0,"size":0,"expanded":4,"recon":4}]}`},
		{d, `{"spans":[{"offset":0,"size":4,"expanded":4,"recon":0}]}`},
		{d, `{"spans":[{"offset":8,"size":8,"expanded":9,"recon":4},{"offset":12,"size":8,"expanded":9,"recon":4}]}`},
		{d, `{"spans":[{"offset":0,"size":4,"expanded":4,"recon":4,"more":1}]}`},
	} {
		_, _, err := (&Step{Op: OpGzipSpans, Blob: tc.blob, Params: json.RawMessage(tc.params)}).decode()
		if err == nil || !strings.Contains(err.Error(), OpGzipSpans) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s %s: %v, want a one-line error naming %s", tc.blob, tc.params, err, OpGzipSpans)
		}
	}
}

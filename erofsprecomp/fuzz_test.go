package erofsprecomp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/rehydrator/rehydrator/lzmarepro"
)

// seedPlan is a small well-formed expanded stream's header: two settings, three clusters with
// implicit and explicit lookaheads.
func seedPlan() []byte {
	p := &Plan{
		Params: []lzmarepro.Params{{Preset: 6, DictSize: 8 << 20, Props: lzmarepro.PresetProps},
			{Preset: 1 | lzmarepro.Extreme, DictSize: 65536, Props: lzmarepro.PresetProps}},
		Clusters: []Cluster{
			{Offset: 4096, Length: 4096, Stream: 4000, Plain: 9000, Lookahead: 100},
			{Offset: 8192, Length: 65536, Stream: 65530, Plain: 200000, Lookahead: 8192, Explicit: true, Param: 1},
			{Offset: 1 << 20, Length: 4096, Stream: 7, Plain: 1},
		},
	}
	return p.header()
}

// FuzzPlan feeds ReadPlan and Restore arbitrary streams: they must fail cleanly, never panic
// or allocate without bound.
func FuzzPlan(f *testing.F) {
	f.Add(seedPlan())
	f.Add(append(seedPlan(), make([]byte, 64)...))
	f.Add((&Plan{}).header())
	f.Add(append((&Plan{}).header(), "body"...))
	f.Add([]byte("RHEROFSX\x02"))
	f.Add([]byte("RHEROFSX\x01\x01\x06\x80\x80\x80\x04\xff\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ReadPlan(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("ReadPlan error %v does not wrap ErrFormat", err)
			}
			return
		}
		var end int64
		for i, c := range p.Clusters {
			if c.Offset < end || c.Stream > c.Length || c.Param >= len(p.Params) {
				t.Fatalf("cluster %d accepted: %+v", i, c)
			}
			end = c.Offset + c.Length
		}
		// Restore must end with an error or with as many bytes as the body describes; only
		// small bodies, so that the test stays quick.
		if len(data) < 4096 {
			_ = Restore(io.Discard, bytes.NewReader(data), 1)
		}
	})
}

func TestRestoreBadInput(t *testing.T) {
	for name, data := range map[string][]byte{
		"empty":       nil,
		"magic":       []byte("RHPRECMP\x01"),
		"version":     []byte("RHEROFSX\x07"),
		"header only": seedPlan(),
		"short body":  append(seedPlan(), make([]byte, 5000)...),
	} {
		err := Restore(io.Discard, bytes.NewReader(data), 2)
		if err == nil {
			t.Errorf("%s: Restore succeeded", name)
		} else if !errors.Is(err, ErrFormat) && !(errors.Is(err, errors.ErrUnsupported) && !haveLZMA()) {
			t.Errorf("%s: %v does not wrap ErrFormat", name, err)
		}
	}
	// A plain body without clusters is the image itself.
	var out bytes.Buffer
	if err := Restore(&out, bytes.NewReader(append((&Plan{}).header(), "image"...)), 1); err != nil || out.String() != "image" {
		t.Errorf("no clusters: %q, %v", out.String(), err)
	}
}

// haveLZMA tells whether this build re-encodes LZMA (cgo); without it Scan finds nothing to
// expand and Restore refuses expanded clusters.
func haveLZMA() bool {
	e, err := lzmarepro.NewEncoder()
	e.Close()
	return err == nil
}

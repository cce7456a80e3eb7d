package ociimage

import (
	"os/exec"
	"slices"
	"testing"
)

func TestCompressionFor(t *testing.T) {
	zstdBin, zstdErr := exec.LookPath("zstd")
	for _, c := range []struct {
		algo    string
		level   int
		want    Compression
		command []string // when the zstd program is installed
		err     string
	}{
		{algo: "gzip", want: Compression{Algo: "gzip", Level: 6}},
		{algo: "gzip", level: 1, want: Compression{Algo: "gzip", Level: 1}},
		{algo: "gzip", level: 10, err: "level 10: gzip levels are 1 to 9"},
		{algo: "zstd", level: 3, want: Compression{Algo: "zstd", Level: 3}},
		{algo: "zstd", level: 11, want: Compression{Algo: "zstd", Level: 11}},
		{algo: "zstd", want: Compression{Algo: "zstd", Level: 11}, command: []string{"-19", "--long=27", "--single-thread", "-q", "-c"}},
		{algo: "zstd", level: 22, want: Compression{Algo: "zstd", Level: 11}, command: []string{"-22", "--long=27", "--single-thread", "-q", "-c", "--ultra"}},
		{algo: "zstd", level: 23, err: "level 23: zstd levels are 1 to 22"},
		{algo: "xz", err: `compression "xz": use zstd or gzip`},
	} {
		got, err := CompressionFor(c.algo, c.level)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("CompressionFor(%s, %d): error %v, want %q", c.algo, c.level, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("CompressionFor(%s, %d): %v", c.algo, c.level, err)
			continue
		}
		want := c.want
		if c.command != nil && zstdErr == nil {
			want.Command = append([]string{zstdBin}, c.command...)
		}
		if got.Algo != want.Algo || got.Level != want.Level || !slices.Equal(got.Command, want.Command) {
			t.Errorf("CompressionFor(%s, %d) = %+v, want %+v", c.algo, c.level, got, want)
		}
		if err := got.validate(); err != nil {
			t.Errorf("CompressionFor(%s, %d) gives an invalid setting: %v", c.algo, c.level, err)
		}
	}
}

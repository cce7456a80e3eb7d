package reflate

import (
	"bytes"
	"os"
	"testing"
)

func TestParseEncode(t *testing.T) {
	data, _ := os.ReadFile("/usr/bin/gzip")
	for level := -2; level <= 9; level++ {
		c, _ := goFlate(data, level)
		s, err := parse(c)
		if err != nil {
			t.Fatal(level, err)
		}
		if !bytes.Equal(s.plain, data) {
			t.Fatal(level, "plain differs")
		}
		out, err := s.encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, c) {
			t.Fatal(level, "re-encoded differs")
		}
	}
}

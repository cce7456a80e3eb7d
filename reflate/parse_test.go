package reflate

import (
	"bytes"
	"os"
	"testing"
)

// reencode parses src into chunks and writes each again from its own tokens and headers.
func reencode(t *testing.T, src []byte) ([]byte, []byte) {
	t.Helper()
	p := &parser{br: &bitReader{r: bytes.NewReader(src)}}
	var out, plain []byte
	var carry byte
	for {
		c, err := p.next()
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			break
		}
		plain = append(plain, c.data[c.hist:c.end]...)
		b, tail, err := c.encode()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 {
			b[0] |= carry
		}
		carry = 0
		if tail > 0 {
			carry = b[len(b)-1]
			b = b[:len(b)-1]
		}
		out = append(out, b...)
	}
	return out, plain
}

func TestParseEncode(t *testing.T) {
	defer func(a, b, c int) { chunkTarget, chunkMax, maxChunkBlocks = a, b, c }(chunkTarget, chunkMax, maxChunkBlocks)
	data, _ := os.ReadFile("/usr/bin/gzip")
	data = append(data, make([]byte, 100<<10)...)
	for _, sizes := range [][3]int{{1 << 20, 2 << 20, 1 << 15}, {10 << 10, 20 << 10, 3}, {1000, 1500, 100}} {
		chunkTarget, chunkMax, maxChunkBlocks = sizes[0], sizes[1], sizes[2]
		for level := -2; level <= 9; level++ {
			c, _ := goFlate(data, level)
			out, plain := reencode(t, c)
			if !bytes.Equal(plain, data) {
				t.Fatal(level, "plain differs")
			}
			if !bytes.Equal(out, c) {
				t.Fatal(level, sizes, "re-encoded differs")
			}
		}
	}
}

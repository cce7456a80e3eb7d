package sparsefile

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/iotest"
)

func TestCopy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 5*BlockSize+123)
	for _, blk := range []int{1, 3} { // blocks 0, 2, 4 and the tail stay zero
		for i := blk * BlockSize; i < (blk+1)*BlockSize; i++ {
			data[i] = byte(r.Uint32())
		}
	}
	data[len(data)-1] = 7
	for _, src := range []struct {
		how string
		r   io.Reader
	}{
		{"plain", bytes.NewReader(data)},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data))},
		{"halves", iotest.HalfReader(bytes.NewReader(data))},
	} {
		t.Run(src.how, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n, err := Copy(f, src.r)
			if err != nil || n != int64(len(data)) {
				t.Fatalf("Copy: %d, %v", n, err)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("content differs")
			}
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			// Two data blocks and the last partial one are written; ext4 and tmpfs allocate
			// in 4 KiB pages, so the zero blocks must not be there.
			if used := st.Blocks * 512; used > 3*BlockSize+8192 {
				t.Errorf("%d bytes allocated for %d bytes of data blocks: zero blocks were written", used, 2*BlockSize+123)
			}
		})
	}
}

func TestAllZeroKeepsLength(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := NewWriter(f)
	for range 3 {
		if _, err := w.Write(make([]byte, 100000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Size() != 300000 || w.Size() != 300000 {
		t.Fatalf("size %v (%v), Size() %d, want 300000", st.Size(), err, w.Size())
	}
}

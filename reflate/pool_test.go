package reflate

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestRebuildPooled: method 2 rebuilds share matchers and scratch memory through pools
// (vmdk-grains rebuilds a grain per core at a time). Streams of both window sizes, rebuilt
// on several goroutines at once in different orders, interleaved with damaged reconstruction
// data that fails half way, all come out bit for bit; the damaged ones give errors.
func TestRebuildPooled(t *testing.T) {
	files, _ := filepath.Glob("testdata/zlibng*.deflate")
	if len(files) < 7 {
		t.Fatalf("%d zlib-ng streams in testdata", len(files))
	}
	type stream struct{ comp, plain, recon, bad []byte }
	var ss []stream
	for _, f := range files {
		comp, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		plain, recon, _, err := Split(comp)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if m, _ := methodLevel(t, recon); m != methodZlibNG {
			continue
		}
		// damaged: the model's level changed (it fails at the stream's check, after a
		// whole run of the matcher)
		bad := bytes.Clone(recon)
		bad[len(magic)+2] ^= 0x01
		ss = append(ss, stream{comp, plain, recon, bad})
	}
	if len(ss) < 5 {
		t.Fatalf("only %d streams split by method 2", len(ss))
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 4 {
				for k := range ss {
					s := ss[(k*(g+1)+round)%len(ss)]
					var out bytes.Buffer
					if err := RebuildStream(&out, bytes.NewReader(s.plain), s.bad); err == nil && bytes.Equal(out.Bytes(), s.comp) {
						continue // a level that makes the same stream
					} else if err == nil {
						errs <- errBadOK
						return
					}
					failed.Add(1)
					out.Reset()
					if err := RebuildStream(&out, bytes.NewReader(s.plain), s.recon); err != nil {
						errs <- err
						return
					} else if !bytes.Equal(out.Bytes(), s.comp) {
						errs <- errPooledDiffers
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if failed.Load() == 0 {
		t.Fatal("no damaged reconstruction data failed: the test tests nothing")
	}
}

var (
	errBadOK         = errors.New("damaged reconstruction data rebuilt a wrong stream without an error")
	errPooledDiffers = errors.New("a pooled rebuild gave other bytes")
)

package ociimage

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// countingRegistry is go-containerregistry's in-process registry, counting blob GETs.
type countingRegistry struct {
	mu   sync.Mutex
	gets map[string]int // blob digest -> GETs
}

func startCountingRegistry(t *testing.T) (*countingRegistry, string) {
	t.Helper()
	c := &countingRegistry{gets: map[string]int{}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			c.mu.Lock()
			c.gets[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
			c.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return c, strings.TrimPrefix(srv.URL, "http://")
}

func (c *countingRegistry) fetched() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.gets {
		out[k] = v
	}
	return out
}

func TestOnlyNeededLayersAreFetched(t *testing.T) {
	f := getFixture(t)
	reg, host := startCountingRegistry(t)
	img := build(t, f.spec())
	ref := "docker://" + host + "/fcos/rehydrator:stable"
	write(t, ref, img)
	m, _ := img.Manifest()
	cfgDigest := m.Config.Digest.String()
	metaLayer := m.Layers[4].Digest.String()
	blob1Layer := m.Layers[2].Digest.String() // layer 0 is the tool, 1..3 the blobs

	src := open(t, ref)
	if got := reg.fetched(); len(got) != 2 || got[cfgDigest] != 1 || got[metaLayer] != 1 {
		t.Fatalf("Open fetched %v, want only the config and the metadata layer", got)
	}
	rc, err := src.OpenBlob(context.Background(), f.digests[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if got := reg.fetched(); len(got) != 3 || got[blob1Layer] != 1 {
		t.Fatalf("after OpenBlob: fetched %v, want one more: the blob's layer %s", got, blob1Layer)
	}
}

func TestConcurrentBlobs(t *testing.T) {
	f := getFixture(t)
	_, host := startCountingRegistry(t)
	img := build(t, f.spec())
	refs := []string{"docker://" + host + "/fcos/rehydrator:stable", "docker-archive:" + filepath.Join(t.TempDir(), "a.tar"), "oci:" + filepath.Join(t.TempDir(), "l")}
	for _, ref := range refs {
		write(t, ref, img)
		src := open(t, ref)
		// Open every blob first, then read them all at once, as parallel rehydration does.
		var rcs []io.ReadCloser
		for _, d := range f.digests {
			rc, err := src.OpenBlob(context.Background(), d)
			if err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			rcs = append(rcs, rc)
		}
		errs := make([]error, len(rcs))
		var wg sync.WaitGroup
		for i, rc := range rcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer rc.Close()
				got, err := io.ReadAll(rc)
				if err == nil && string(got) != string(f.content[f.digests[i]]) {
					err = errors.New("content differs")
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
	}
}

func TestBuildCancelled(t *testing.T) {
	f := getFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, f.spec(), t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Build with a cancelled context: %v", err)
	}
}

// linkCount is the number of hard links of a file.
func linkCount(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Nlink)
}

package ociimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// blobServer serves one blob at /v2/r/blobs/<digest>; serve decides each GET's answer.
func blobServer(t *testing.T, serve func(w http.ResponseWriter, r *http.Request, n int)) (*blobFetcher, *atomic.Int32) {
	t.Helper()
	old := fetchBackoff
	fetchBackoff = time.Millisecond
	t.Cleanup(func() { fetchBackoff = old })
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		serve(w, r, int(gets.Add(1)))
	}))
	t.Cleanup(srv.Close)
	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/r")
	if err != nil {
		t.Fatal(err)
	}
	f, err := newBlobFetcher(t.Context(), repo)
	if err != nil {
		t.Fatal(err)
	}
	return f, &gets
}

func testBlob() ([]byte, v1.Descriptor) {
	b := bytes.Repeat([]byte("rehydrator blob "), 4096)
	sum := sha256.Sum256(b)
	return b, v1.Descriptor{Size: int64(len(b)), Digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}}
}

// cutAt writes the head of body with a Content-Length for all of it, then hangs up.
func cutAt(w http.ResponseWriter, body []byte, status int, n int) {
	w.Header().Set("Content-Length", itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body[:n])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestFetchResumes(t *testing.T) {
	blob, desc := testBlob()
	for _, tc := range []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request, n int)
		gets  int32
	}{
		{"range honoured", func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				cutAt(w, blob, http.StatusOK, 1000)
			}
			if got := r.Header.Get("Range"); got != "bytes=1000-" {
				t.Errorf("second GET asked for %q, want bytes=1000-", got)
			}
			w.Header().Set("Content-Range", "bytes 1000-"+itoa(len(blob)-1)+"/"+itoa(len(blob)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(blob[1000:])
		}, 2},
		{"range ignored", func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				cutAt(w, blob, http.StatusOK, 5000)
			}
			w.Write(blob) // a server without Range support starts again
		}, 2},
		{"503 twice", func(w http.ResponseWriter, r *http.Request, n int) {
			if n <= 2 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			w.Write(blob)
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, gets := blobServer(t, tc.serve)
			rc, err := f.open(t.Context(), desc)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, blob) {
				t.Fatalf("read %d bytes, err %v: want the whole blob", len(got), err)
			}
			if gets.Load() != tc.gets {
				t.Fatalf("%d GETs, want %d", gets.Load(), tc.gets)
			}
		})
	}
}

func TestFetchFails(t *testing.T) {
	blob, desc := testBlob()
	for _, tc := range []struct {
		name, want string
		serve      func(w http.ResponseWriter, r *http.Request, n int)
		gets       int32
	}{
		{"404 is not retried", "404 Not Found", func(w http.ResponseWriter, r *http.Request, n int) {
			http.NotFound(w, r)
		}, 1},
		{"500 until giving up", "gave up after 5 attempts", func(w http.ResponseWriter, r *http.Request, n int) {
			w.WriteHeader(http.StatusInternalServerError)
		}, int32(fetchAttempts)},
		{"damaged blob", "hash to", func(w http.ResponseWriter, r *http.Request, n int) {
			bad := append([]byte(nil), blob...)
			bad[7] ^= 1
			w.Write(bad)
		}, 1},
		{"no byte ever arrives", "gave up after", func(w http.ResponseWriter, r *http.Request, n int) {
			cutAt(w, blob, http.StatusOK, 0)
		}, int32(fetchAttempts)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, gets := blobServer(t, tc.serve)
			var err error
			rc, err := f.open(t.Context(), desc)
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if gets.Load() != tc.gets {
				t.Fatalf("%d GETs, want %d", gets.Load(), tc.gets)
			}
		})
	}
}

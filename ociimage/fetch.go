package ociimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Retry policy of blob downloads. A registry that answers 5xx, 408 or 429, or a connection
// that drops mid-blob, is tried again after a pause that doubles each time; a dropped
// connection resumes with an HTTP Range request where the registry honours it. Attempts are
// counted since the last byte that arrived, so a slow link that keeps moving is never given up.
var (
	fetchAttempts = 5
	fetchBackoff  = 250 * time.Millisecond
)

// blobFetcher downloads blobs of one repository over an authenticated transport.
type blobFetcher struct {
	client *http.Client
	repo   name.Repository
}

func newBlobFetcher(ctx context.Context, repo name.Repository) (*blobFetcher, error) {
	auth, err := authn.DefaultKeychain.Resolve(repo)
	if err != nil {
		return nil, err
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, remote.DefaultTransport, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	return &blobFetcher{client: &http.Client{Transport: transport.NewUserAgent(rt, "rehydrator")}, repo: repo}, nil
}

// open streams the compressed blob d. The reader resumes after dropped connections and fails at
// the end, instead of returning io.EOF, if the bytes do not hash to d.
func (f *blobFetcher) open(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	r := &resumingReader{ctx: ctx, f: f, desc: d, h: sha256.New()}
	if err := r.connect(); err != nil {
		return nil, err
	}
	return r, nil
}

func (f *blobFetcher) url(d v1.Hash) string {
	return fmt.Sprintf("%s://%s/v2/%s/blobs/%s", f.repo.Scheme(), f.repo.RegistryStr(), f.repo.RepositoryStr(), d)
}

// resumingReader is one blob download that reconnects where the last connection stopped.
type resumingReader struct {
	ctx  context.Context
	f    *blobFetcher
	desc v1.Descriptor
	h    hash.Hash
	off  int64
	body io.ReadCloser
	// failures counts attempts since the last byte that arrived.
	failures int
}

func retryableStatus(code int) bool {
	return code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
}

// connect (re)opens the blob at r.off, retrying what a retry can cure.
func (r *resumingReader) connect() error {
	for {
		err := r.get()
		if err == nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) || r.ctx.Err() != nil {
			return err
		}
		r.failures++
		if r.failures >= fetchAttempts {
			return fmt.Errorf("gave up after %d attempts (the registry or the network keeps failing: try again later or read a mirror): %w", r.failures, err)
		}
		if err := r.pause(); err != nil {
			return err
		}
	}
}

// permanentError is an answer that asking again will not change (404, 401, ...).
type permanentError struct{ error }

func (r *resumingReader) get() error {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.f.url(r.desc.Digest), nil)
	if err != nil {
		return permanentError{err}
	}
	if r.off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(r.off, 10)+"-")
	}
	resp, err := r.f.client.Do(req)
	if err != nil {
		return err
	}
	skip := int64(0)
	switch {
	case resp.StatusCode == http.StatusPartialContent && r.off > 0:
		var start int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-", &start); err != nil || start != r.off {
			resp.Body.Close()
			return permanentError{fmt.Errorf("registry answered range %d- with %q", r.off, resp.Header.Get("Content-Range"))}
		}
	case resp.StatusCode == http.StatusOK:
		// No range support: read again from the start and drop what we already have.
		skip = r.off
	default:
		resp.Body.Close()
		err := fmt.Errorf("GET %s: registry answered %s", r.desc.Digest, resp.Status)
		if retryableStatus(resp.StatusCode) {
			return err
		}
		return permanentError{err}
	}
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, skip); err != nil {
			resp.Body.Close()
			return err
		}
	}
	r.body = resp.Body
	return nil
}

func (r *resumingReader) pause() error {
	d := fetchBackoff << (r.failures - 1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

func (r *resumingReader) Read(p []byte) (int, error) {
	for {
		if r.body == nil {
			if err := r.connect(); err != nil {
				return 0, fmt.Errorf("blob %s at byte %d of %d: %w", r.desc.Digest, r.off, r.desc.Size, err)
			}
		}
		n, err := r.body.Read(p)
		if n > 0 {
			r.h.Write(p[:n])
			r.off += int64(n)
			r.failures = 0
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF && (r.desc.Size <= 0 || r.off >= r.desc.Size):
			if got := "sha256:" + hex.EncodeToString(r.h.Sum(nil)); got != r.desc.Digest.String() {
				return n, fmt.Errorf("blob %s: downloaded bytes hash to %s: the registry holds a damaged blob", r.desc.Digest, got)
			}
			return n, io.EOF
		}
		// The connection dropped (or ended early): reconnect at r.off on the next round.
		r.body.Close()
		r.body = nil
		if r.ctx.Err() != nil {
			return n, r.ctx.Err()
		}
		if n == 0 {
			r.failures++
			if r.failures >= fetchAttempts {
				return 0, fmt.Errorf("blob %s at byte %d of %d: gave up after %d attempts (the registry or the network keeps failing: try again later or read a mirror): %w", r.desc.Digest, r.off, r.desc.Size, r.failures, err)
			}
			if err := r.pause(); err != nil {
				return 0, err
			}
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (r *resumingReader) Close() error {
	if r.body != nil {
		return r.body.Close()
	}
	return nil
}

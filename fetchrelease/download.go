package fetchrelease

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rehydrator/rehydrator/streammeta"
)

// permanentError is an error no further attempt can cure (a 404, a wrong sha256, a full disk).
type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

// download fetches a's shipped file into final+".part", resuming what an earlier attempt or run
// left there, checks its sha256 as the bytes arrive and renames it to final only when it matches.
func (f *fetcher) download(ctx context.Context, a streammeta.Artifact, final string) error {
	part := final + ".part"
	wait := f.opt.RetryWait
	restarted := false
	var lastErr error
	for attempt := 1; attempt <= f.opt.Attempts; attempt++ {
		resumed, err := f.attempt(ctx, a, part)
		if err == nil {
			if err := os.Rename(part, final); err != nil {
				return fmt.Errorf("cache: %w", err)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrChecksum) {
			os.Remove(part)
			// A resumed file may be wrong because of the bytes kept from before (a file changed
			// on the server between the two transfers): one whole new transfer settles it.
			if resumed > 0 && !restarted {
				restarted = true
				f.opt.Progress(Event{File: a.ShippedName, State: StateRetry, Err: err})
				continue
			}
			return fmt.Errorf("%s: %w", a.ShippedName, err)
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return fmt.Errorf("%s: %w", a.ShippedName, perm.error)
		}
		lastErr = err
		if attempt == f.opt.Attempts {
			break
		}
		f.opt.Progress(Event{File: a.ShippedName, State: StateRetry, Err: err})
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait *= 2
	}
	return fmt.Errorf("%s: %w (tried %d times; run the same command again to resume)", a.ShippedName, lastErr, f.opt.Attempts)
}

// attempt makes one HTTP request for the rest of the file. It returns how many bytes it kept
// from the .part file.
func (f *fetcher) attempt(ctx context.Context, a streammeta.Artifact, part string) (int64, error) {
	file, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return 0, permanentError{fmt.Errorf("cache: %w", err)}
	}
	defer file.Close()
	h := sha256.New()
	// The kept bytes are hashed again: the sha256 covers the whole file, not just this transfer.
	have, err := io.Copy(h, &ctxReader{ctx: ctx, r: file})
	if err != nil {
		return 0, permanentError{fmt.Errorf("cache: %s: %w", part, err)}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Location, nil)
	if err != nil {
		return 0, permanentError{err}
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
	}
	resp, err := f.opt.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != have {
			return 0, fmt.Errorf("the server resumed at %q, not at byte %d", resp.Header.Get("Content-Range"), have)
		}
	case resp.StatusCode == http.StatusOK:
		// A server that ignores Range sends the whole file: start over.
		if have > 0 {
			if err := restart(file, h); err != nil {
				return 0, err
			}
			have = 0
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// The .part file is as long as the file or longer: it cannot be trusted; start over.
		if err := restart(file, h); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("the server has no bytes past %d", have)
	case resp.StatusCode >= 500:
		return have, fmt.Errorf("%s answered %s", hostOf(a.Location), resp.Status)
	default:
		return have, permanentError{fmt.Errorf("%s answered %s for %s (check the stream's location)", hostOf(a.Location), resp.Status, a.Location)}
	}
	total := int64(-1)
	if resp.ContentLength >= 0 {
		total = have + resp.ContentLength
	}
	if _, err := file.Seek(have, io.SeekStart); err != nil {
		return have, permanentError{fmt.Errorf("cache: %w", err)}
	}
	// A stalled transfer (no byte for StallTimeout) is cut; the next attempt resumes it.
	stall := time.AfterFunc(f.opt.StallTimeout, func() {
		cancel(fmt.Errorf("no data for %s", f.opt.StallTimeout))
	})
	defer stall.Stop()
	f.opt.Progress(Event{File: a.ShippedName, State: StateDownloading, Done: have, Total: total, Resumed: have})
	done := have
	buf := make([]byte, 256<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(f.opt.StallTimeout)
			if _, err := file.Write(buf[:n]); err != nil {
				return have, permanentError{fmt.Errorf("cache: %s: %w", part, err)}
			}
			h.Write(buf[:n])
			done += int64(n)
			f.opt.Progress(Event{File: a.ShippedName, State: StateDownloading, Done: done, Total: total, Resumed: have})
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && !errors.Is(cause, context.Canceled) {
				rerr = cause
			}
			return have, fmt.Errorf("transfer cut at byte %d: %w", done, rerr)
		}
	}
	if total >= 0 && done != total {
		return have, fmt.Errorf("transfer ended at byte %d of %d", done, total)
	}
	if err := file.Sync(); err != nil {
		return have, permanentError{fmt.Errorf("cache: %s: %w", part, err)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		return have, fmt.Errorf("%w: downloaded file has %s, the stream says %s (the server's file is not the one the stream names; nothing kept)", ErrChecksum, got, a.SHA256)
	}
	f.opt.Progress(Event{File: a.ShippedName, State: StateDone, Done: done, Total: done, Resumed: have})
	return have, nil
}

func restart(file *os.File, h hash.Hash) error {
	h.Reset()
	if err := file.Truncate(0); err != nil {
		return permanentError{fmt.Errorf("cache: %w", err)}
	}
	return nil
}

// rangeStart reads the first byte position of "bytes START-END/SIZE".
func rangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	s, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

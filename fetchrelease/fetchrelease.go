// Package fetchrelease downloads the files a Fedora CoreOS stream.json names into a local cache,
// checks each against the stream's sha256 while it streams (and, on request, against its detached
// OpenPGP signature), and lays them out as release directories, one per architecture, in the
// shape dehydrate reads: DIR/stream.json and DIR/<last element of each location>.
//
// Downloads resume where an interrupted one stopped (HTTP Range into a .part file), run in
// parallel, and are skipped when the cache already holds the file. The library never prints: it
// reports progress as Events.
package fetchrelease

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rehydrator/rehydrator/internal/workpool"
	"github.com/rehydrator/rehydrator/streammeta"
)

// Options say what to fetch and where to keep it.
type Options struct {
	// Arches are the architectures to fetch (at least one).
	Arches []string
	// CacheDir holds the downloaded files (files/<sha256>), the release directories
	// (releases/<stream>-<digest>/<arch>) and lock files (locks/). Default: DefaultCacheDir().
	CacheDir string
	// Keyring, when set, is an OpenPGP public keyring (binary or ASCII-armored) that every file's
	// detached signature (the stream's "signature" URL, else location + ".sig") must verify
	// against, with gpgv(1).
	Keyring string
	// Jobs is the number of parallel downloads (default 4).
	Jobs int
	// Client makes the HTTP requests (default: a client with a response-header timeout).
	Client *http.Client
	// Attempts per file before a network error or a 5xx answer is final (default 5), and the
	// first pause between attempts, doubled after each (default 1s).
	Attempts  int
	RetryWait time.Duration
	// StallTimeout ends a transfer that has received nothing for this long (default 60s); the
	// next attempt resumes it.
	StallTimeout time.Duration
	// Progress receives events from several goroutines at once; nil ignores them.
	Progress func(Event)
}

// Event states.
const (
	StateChecking    = "checking"    // hashing a file the cache already holds
	StateCached      = "cached"      // the cache held the file with the right sha256
	StateDownloading = "downloading" // bytes arrive (Done of Total)
	StateRetry       = "retry"       // an attempt failed (Err); the next one resumes
	StateDone        = "done"        // downloaded and checked
	StateVerified    = "verified"    // its OpenPGP signature is good
)

// Event reports progress on one file.
type Event struct {
	File        string // the shipped file name
	State       string
	Done, Total int64 // bytes; Total is -1 when the server does not say
	Resumed     int64 // bytes the transfer did not have to fetch again
	Err         error
}

// ErrChecksum marks a downloaded file whose sha256 is not the stream's.
var ErrChecksum = errors.New("sha256 mismatch")

// ErrSignature marks a file whose OpenPGP signature is missing or does not verify.
var ErrSignature = errors.New("signature check failed")

// DefaultCacheDir is rehydrator's directory in the user's cache directory.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: %w (give --cache DIR)", err)
	}
	return filepath.Join(d, "rehydrator"), nil
}

// maxStreamSize bounds a stream.json read from the network; real ones are about 60 KiB.
const maxStreamSize = 16 << 20

// ReadStream reads a stream.json from a file path or an http(s) URL.
func ReadStream(ctx context.Context, src string, client *http.Client) ([]byte, error) {
	if !strings.HasPrefix(src, "http://") && !strings.HasPrefix(src, "https://") {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("stream metadata: %w (give a stream.json file or an http(s) URL)", err)
		}
		return b, nil
	}
	if client == nil {
		client = defaultClient()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("stream metadata %s: %w", src, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("stream metadata: %w (check the URL and the network)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("stream metadata %s: the server answered %s", src, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxStreamSize+1))
	if err != nil {
		return nil, fmt.Errorf("stream metadata %s: %w", src, err)
	}
	if len(b) > maxStreamSize {
		return nil, fmt.Errorf("stream metadata %s: larger than %d MiB: not a stream.json", src, maxStreamSize>>20)
	}
	return b, nil
}

// Select returns the artifacts of the given architectures, in the release's order.
func Select(rel *streammeta.Release, arches []string) ([]streammeta.Artifact, error) {
	if len(arches) == 0 {
		return nil, errors.New("no architecture chosen")
	}
	have := map[string]bool{}
	for _, a := range rel.Arches() {
		have[a] = true
	}
	want := map[string]bool{}
	for _, a := range arches {
		if !have[a] {
			return nil, fmt.Errorf("the stream has no architecture %q (it has %s): choose with --arch", a, strings.Join(rel.Arches(), ", "))
		}
		want[a] = true
	}
	var out []streammeta.Artifact
	for _, a := range rel.Artifacts {
		if want[a.Arch] {
			out = append(out, a)
		}
	}
	return out, nil
}

// Fetch downloads every file of the chosen architectures and returns one release directory per
// architecture, in the order of opt.Arches. Each directory's stream.json is the shipped document
// with the other architectures taken out (streammeta.OnlyArch); its files are hard links into the
// cache. On error, the files already complete stay in the cache and a cut transfer stays as a
// .part file that the next run resumes; no release directory names an unchecked file.
func Fetch(ctx context.Context, raw []byte, opt Options) ([]string, error) {
	rel, err := streammeta.Parse(raw)
	if err != nil {
		return nil, err
	}
	arts, err := Select(rel, opt.Arches)
	if err != nil {
		return nil, err
	}
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	filesDir := filepath.Join(opt.CacheDir, "files")
	if err := os.MkdirAll(filesDir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var keyring string
	if opt.Keyring != "" {
		if keyring, err = prepareKeyring(opt.Keyring, opt.CacheDir); err != nil {
			return nil, err
		}
		defer os.Remove(keyring)
	}
	f := &fetcher{opt: opt, filesDir: filesDir, keyring: keyring}
	// Identical files (the same sha256 under two names) are fetched once.
	bySHA := map[string]streammeta.Artifact{}
	var unique []streammeta.Artifact
	for _, a := range arts {
		if _, ok := bySHA[a.SHA256]; !ok {
			bySHA[a.SHA256] = a
			unique = append(unique, a)
		}
	}
	if err := f.all(ctx, unique); err != nil {
		return nil, err
	}
	return f.layout(ctx, rel, arts)
}

func (o *Options) defaults() error {
	if o.CacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = d
	}
	if o.Jobs <= 0 {
		o.Jobs = 4
	}
	if o.Client == nil {
		o.Client = defaultClient()
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.RetryWait <= 0 {
		o.RetryWait = time.Second
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = 60 * time.Second
	}
	if o.Progress == nil {
		o.Progress = func(Event) {}
	}
	return nil
}

func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 60 * time.Second
	return &http.Client{Transport: t}
}

type fetcher struct {
	opt      Options
	filesDir string
	keyring  string
}

// all fetches the files with at most opt.Jobs at once; the first error cancels the others (their
// .part files stay for the next run).
func (f *fetcher) all(ctx context.Context, arts []streammeta.Artifact) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	var first error // the failure that cancelled the others, not their context.Canceled
	err := workpool.ForEach(ctx, len(arts), f.opt.Jobs, func(i int) error {
		err := f.one(ctx, arts[i])
		if err != nil {
			once.Do(func() { first = err; cancel() })
		}
		return err
	})
	if first != nil {
		return first
	}
	return err
}

// one makes sure files/<sha256> holds the artifact's shipped file, checked.
func (f *fetcher) one(ctx context.Context, a streammeta.Artifact) error {
	final := filepath.Join(f.filesDir, a.SHA256)
	// Two builds sharing a cache take turns on a file: the second finds it complete.
	unlock, err := lockFile(ctx, filepath.Join(f.opt.CacheDir, "locks", a.SHA256))
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer unlock()
	have, err := f.cached(ctx, a, final)
	if err != nil {
		return err
	}
	if !have {
		if err := f.download(ctx, a, final); err != nil {
			return err
		}
	}
	if f.keyring != "" {
		if err := f.verifySignature(ctx, a, final); err != nil {
			return err
		}
	}
	return nil
}

// cached reports whether final holds the file with the right sha256; a wrong one is removed.
func (f *fetcher) cached(ctx context.Context, a streammeta.Artifact, final string) (bool, error) {
	file, err := os.Open(final)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("cache: %w", err)
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return false, fmt.Errorf("cache: %w", err)
	}
	h := sha256.New()
	f.opt.Progress(Event{File: a.ShippedName, State: StateChecking, Total: st.Size()})
	if _, err := io.Copy(h, &ctxReader{ctx: ctx, r: file}); err != nil {
		return false, fmt.Errorf("cache: %s: %w", final, err)
	}
	if hex.EncodeToString(h.Sum(nil)) != a.SHA256 {
		os.Remove(final)
		return false, nil
	}
	f.opt.Progress(Event{File: a.ShippedName, State: StateCached, Done: st.Size(), Total: st.Size()})
	return true, nil
}

// layout writes releases/<stream>-<digest>/<arch>/ for each chosen architecture. A directory
// that already holds exactly these files is left alone (another build may be reading it); any
// other is replaced whole, by a rename, so that no one sees it half made.
func (f *fetcher) layout(ctx context.Context, rel *streammeta.Release, arts []streammeta.Artifact) ([]string, error) {
	sum := sha256.Sum256(rel.Raw)
	base := filepath.Join(f.opt.CacheDir, "releases", safeName(rel.Stream.Stream)+"-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(f.opt.CacheDir, "locks", filepath.Base(base)))
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	defer unlock()
	var dirs []string
	for _, arch := range f.opt.Arches {
		doc, err := rel.OnlyArch(arch)
		if err != nil {
			return nil, err
		}
		var mine []streammeta.Artifact
		for _, a := range arts {
			if a.Arch == arch {
				mine = append(mine, a)
			}
		}
		dir := filepath.Join(base, arch)
		if !f.laidOut(dir, doc, mine) {
			if err := f.writeDir(base, dir, doc, mine); err != nil {
				return nil, fmt.Errorf("cache: %w", err)
			}
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// laidOut reports whether dir holds stream.json = doc and exactly the artifacts' cached files.
func (f *fetcher) laidOut(dir string, doc []byte, arts []streammeta.Artifact) bool {
	if got, err := os.ReadFile(filepath.Join(dir, "stream.json")); err != nil || !bytes.Equal(got, doc) {
		return false
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != len(arts)+1 {
		return false
	}
	for _, a := range arts {
		have, err1 := os.Stat(filepath.Join(dir, a.ShippedName))
		want, err2 := os.Stat(filepath.Join(f.filesDir, a.SHA256))
		if err1 != nil || err2 != nil || !os.SameFile(have, want) {
			return false
		}
	}
	return true
}

func (f *fetcher) writeDir(base, dir string, doc []byte, arts []streammeta.Artifact) error {
	tmp, err := os.MkdirTemp(base, ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, a := range arts {
		if err := linkOrSymlink(filepath.Join(f.filesDir, a.SHA256), filepath.Join(tmp, a.ShippedName)); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "stream.json"), doc, 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// lockFile takes an exclusive flock(2) on path, waiting for another process that holds it.
func lockFile(ctx context.Context, path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(lf.Fd()), syscall.LOCK_UN); lf.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			lf.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			lf.Close()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// linkOrSymlink hard-links src to dst; a symbolic link where the file system has no hard links.
func linkOrSymlink(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return os.Symlink(src, dst)
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func safeName(s string) string {
	s = unsafeChars.ReplaceAllString(s, "_")
	if s == "" || strings.HasPrefix(s, ".") {
		s = "stream" + s
	}
	return s
}

// signatureURL is where the artifact's detached signature is: the stream's "signature" key, as
// in every real stream, else location + ".sig" (Fedora's naming).
func signatureURL(a streammeta.Artifact) string {
	if a.Signature != "" {
		return a.Signature
	}
	return a.Location + ".sig"
}

// Lines returns what --dry-run prints: one line per artifact (platform, format, kind, file name).
func Lines(arts []streammeta.Artifact) []string {
	out := make([]string, 0, len(arts))
	for _, a := range arts {
		out = append(out, fmt.Sprintf("%s\t%s\t%s\t%s", a.Platform, a.Format, a.Kind, a.ShippedName))
	}
	return out
}

// hostOf names a URL's server for error messages.
func hostOf(u string) string {
	if p, err := url.Parse(u); err == nil && p.Host != "" {
		return p.Host
	}
	return u
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

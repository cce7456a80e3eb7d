package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/fetchrelease"
	"github.com/rehydrator/rehydrator/internal/units"
	"github.com/rehydrator/rehydrator/rehydrate"
	"github.com/rehydrator/rehydrator/streammeta"
)

// streamFlags are build's flags for building from a stream.json instead of release directories.
type streamFlags struct {
	src, cache, keyring string
	arches              []string
	jobs                int
	dryRun              bool
}

func (s *streamFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.src, "stream", "", "build from this stream.json (file or http(s) URL): download its files first, instead of RELEASE_DIR")
	f.StringArrayVar(&s.arches, "arch", nil, "with --stream: architecture to download and build (repeatable; default: this machine's)")
	f.StringVar(&s.cache, "cache", "", "with --stream: download cache (default: rehydrator/ in the user cache directory)")
	f.StringVar(&s.keyring, "verify-gpg", "", "with --stream: check each file's detached .sig against this OpenPGP keyring (gpgv)")
	f.IntVar(&s.jobs, "download-jobs", 4, "with --stream: parallel downloads")
	f.BoolVar(&s.dryRun, "dry-run", false, "with --stream: print each artifact (platform, format, kind, file) and download nothing")
}

// check refuses flag combinations before anything runs.
func (s *streamFlags) check(cmd *cobra.Command, args []string) error {
	if s.src == "" {
		for _, name := range []string{"arch", "cache", "verify-gpg", "download-jobs", "dry-run"} {
			if cmd.Flags().Changed(name) {
				return usagef("--%s goes with --stream", name)
			}
		}
		return nil
	}
	if len(args) > 0 {
		return usagef("give either RELEASE_DIR or --stream, not both")
	}
	return nil
}

// releaseDirs downloads the stream's files and returns the release directories to build, one
// per architecture; with --dry-run it prints the artifacts and returns none.
func (s *streamFlags) releaseDirs(cmd *cobra.Command, quiet bool) ([]string, error) {
	ctx := cmd.Context()
	raw, err := fetchrelease.ReadStream(ctx, s.src, nil)
	if err != nil {
		return nil, err
	}
	rel, err := streammeta.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.src, err)
	}
	arches := s.arches
	if len(arches) == 0 {
		arches = []string{rehydrate.MachineArch()}
	}
	arts, err := fetchrelease.Select(rel, arches)
	if err != nil {
		return nil, usageError{err}
	}
	if s.dryRun {
		for _, l := range fetchrelease.Lines(arts) {
			fmt.Fprintln(cmd.OutOrStdout(), l)
		}
		return nil, nil
	}
	prog := newDownloadProgress(os.Stderr, !quiet && isTerminal(os.Stderr), quiet, len(arts))
	defer prog.finish()
	start := time.Now()
	dirs, err := fetchrelease.Fetch(ctx, raw, fetchrelease.Options{
		Arches: arches, CacheDir: s.cache, Keyring: s.keyring, Jobs: s.jobs, Progress: prog.event,
	})
	if err != nil {
		return nil, err
	}
	prog.finish()
	if !quiet {
		fmt.Fprintf(os.Stderr, "release files ready in %s (%s)\n", strings.Join(dirs, ", "), time.Since(start).Round(time.Second))
	}
	return dirs, nil
}

// downloadProgress renders fetchrelease's events: on a terminal, one line redrawn with the whole
// download's state; elsewhere, one plain line per finished file.
type downloadProgress struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	quiet    bool
	files    int
	start    time.Time
	last     time.Time
	done     map[string]int64
	total    map[string]int64
	finished map[string]bool
	drawn    bool
}

func newDownloadProgress(w io.Writer, terminal, quiet bool, files int) *downloadProgress {
	return &downloadProgress{w: w, terminal: terminal, quiet: quiet, files: files, start: time.Now(),
		done: map[string]int64{}, total: map[string]int64{}, finished: map[string]bool{}}
}

func (p *downloadProgress) event(e fetchrelease.Event) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.State != fetchrelease.StateRetry && e.State != fetchrelease.StateVerified { // they carry no byte counts
		if e.Total > 0 {
			p.total[e.File] = e.Total
		}
		p.done[e.File] = e.Done
	}
	line := ""
	switch e.State {
	case fetchrelease.StateCached:
		p.finished[e.File] = true
		line = fmt.Sprintf("cached %s (%s)", e.File, units.Bytes(e.Done))
	case fetchrelease.StateDone:
		p.finished[e.File] = true
		line = fmt.Sprintf("downloaded %s (%s)", e.File, units.Bytes(e.Done))
		if e.Resumed > 0 {
			line += fmt.Sprintf(", resumed at %s", units.Bytes(e.Resumed))
		}
	case fetchrelease.StateRetry:
		line = fmt.Sprintf("retrying %s: %v", e.File, e.Err)
	case fetchrelease.StateVerified:
		line = fmt.Sprintf("signature good: %s", e.File)
	}
	if !p.terminal {
		if line != "" {
			fmt.Fprintln(p.w, line)
		}
		return
	}
	// On a terminal only retries get a line of their own; the rest is the one status line.
	if e.State == fetchrelease.StateRetry {
		fmt.Fprintf(p.w, "\r\033[K%s\n", line)
		p.drawn = false
	}
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond && !p.finished[e.File] {
		return
	}
	p.last = now
	var done, total int64
	for f, n := range p.done {
		done += n
		total += max(p.total[f], n)
	}
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-3)
	var active []string
	for f := range p.done {
		if !p.finished[f] {
			active = append(active, f)
		}
	}
	sort.Strings(active)
	fmt.Fprintf(p.w, "\r\033[Kfiles %d/%d  %s / %s  %s/s  %s", len(p.finished), p.files, units.Bytes(done), units.Bytes(total), units.Bytes(int64(rate)), strings.Join(active, " "))
	p.drawn = true
}

func (p *downloadProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

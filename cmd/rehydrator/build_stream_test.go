package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rehydrator/rehydrator/fetchrelease"
)

func TestDownloadProgress(t *testing.T) {
	events := []fetchrelease.Event{
		{File: "a.qcow2.xz", State: fetchrelease.StateDownloading, Done: 0, Total: 1 << 20},
		{File: "b.ova", State: fetchrelease.StateCached, Done: 2 << 20, Total: 2 << 20},
		{File: "a.qcow2.xz", State: fetchrelease.StateRetry, Err: errors.New("transfer cut at byte 5")},
		{File: "a.qcow2.xz", State: fetchrelease.StateDownloading, Done: 1 << 19, Total: 1 << 20, Resumed: 1 << 19},
		{File: "a.qcow2.xz", State: fetchrelease.StateDone, Done: 1 << 20, Total: 1 << 20, Resumed: 1 << 19},
		{File: "a.qcow2.xz", State: fetchrelease.StateVerified},
	}
	// Not a terminal: one plain line per finished file, per retry and per good signature.
	var plain bytes.Buffer
	p := newDownloadProgress(&plain, false, false, 2)
	for _, e := range events {
		p.event(e)
	}
	p.finish()
	want := "cached b.ova (2.0 MiB)\nretrying a.qcow2.xz: transfer cut at byte 5\ndownloaded a.qcow2.xz (1.0 MiB), resumed at 512.0 KiB\nsignature good: a.qcow2.xz\n"
	if plain.String() != want {
		t.Fatalf("plain output:\n%q\nwant\n%q", plain.String(), want)
	}
	// A terminal: one status line redrawn in place, retries on lines of their own, a newline at the end.
	var term bytes.Buffer
	p = newDownloadProgress(&term, true, false, 2)
	for _, e := range events {
		p.event(e)
		time.Sleep(time.Millisecond)
	}
	p.finish()
	out := term.String()
	if !strings.Contains(out, "\r\033[Kfiles 2/2  3.0 MiB / 3.0 MiB") || !strings.Contains(out, "\r\033[Kretrying a.qcow2.xz: transfer cut at byte 5\n") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("terminal output: %q", out)
	}
	if last := out[strings.LastIndex(out, "\r"):]; !strings.HasPrefix(last, "\r\033[Kfiles 2/2  3.0 MiB / 3.0 MiB") {
		t.Fatalf("last status line %q", last)
	}
	if strings.Count(out, "\n") != 2 {
		t.Fatalf("terminal output has %d lines, want the retry and the final one: %q", strings.Count(out, "\n"), out)
	}
	// --quiet: nothing.
	var quiet bytes.Buffer
	p = newDownloadProgress(&quiet, false, true, 2)
	for _, e := range events {
		p.event(e)
	}
	p.finish()
	if quiet.Len() != 0 {
		t.Fatalf("quiet wrote %q", quiet.String())
	}
}

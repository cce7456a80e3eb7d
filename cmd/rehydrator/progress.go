package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/rehydrator/rehydrator/internal/units"
)

// progressBar draws "name  1.2 GiB / 2.0 GiB  310 MiB/s  ETA 3s" on a terminal's stderr and
// nothing at all when stderr is not a terminal.
type progressBar struct {
	mu      sync.Mutex
	w       io.Writer
	enabled bool
	name    string
	total   int64
	start   time.Time
	last    time.Time
}

func newProgressBar(enabled bool) *progressBar {
	return &progressBar{w: os.Stderr, enabled: enabled && isTerminal(os.Stderr)}
}

// isTerminal asks the terminal driver (TCGETS), since /dev/null and /dev/full are character
// devices too and must count as redirected output.
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

func (p *progressBar) update(name string, total, done int64) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if name != p.name {
		p.finishLocked()
		p.name, p.total, p.start = name, total, now
	}
	if now.Sub(p.last) < 200*time.Millisecond && done < total {
		return
	}
	p.last = now
	secs := now.Sub(p.start).Seconds()
	rate := float64(done) / max(secs, 1e-3)
	eta := ""
	if rate > 0 && total > done {
		eta = fmt.Sprintf("  ETA %s", time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second))
	}
	fmt.Fprintf(p.w, "\r\033[K%s  %s / %s  %s/s%s", name, units.Bytes(done), units.Bytes(total), units.Bytes(int64(rate)), eta)
}

func (p *progressBar) finish() {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
}

func (p *progressBar) finishLocked() {
	if p.name != "" {
		fmt.Fprintln(p.w)
		p.name = ""
	}
}

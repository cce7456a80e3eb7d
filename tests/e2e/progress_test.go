package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	unlock := int32(0)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlock pty: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("pty number: %v", e)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	return m, s
}

// TestProgressOnTerminal: with standard error on a terminal, rehydrate draws bytes, rate and
// ETA; with standard error redirected (every other test) it prints nothing but errors.
func TestProgressOnTerminal(t *testing.T) {
	ref, sm := sharedLayout(t)
	a := find(t, sm, "openstack")
	master, slave := openPTY(t)
	defer master.Close()
	cmd := exec.Command(bin, "rehydrate", t.TempDir(), "--disk", "openstack", "--image", ref)
	cmd.Stderr = slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var screen bytes.Buffer
	done := make(chan struct{})
	go func() { io.Copy(&screen, master); close(done) }() // ends with EIO when the child exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rehydrate: %v\n%s", err, screen.Bytes())
	}
	<-done
	got := screen.String()
	for _, want := range []string{a.Name, " / ", "/s", "ETA"} {
		if !strings.Contains(got, want) {
			t.Fatalf("the terminal shows %q, want progress with %q", got, want)
		}
	}
	r := run(t, nil, "rehydrate", t.TempDir(), "--disk", "openstack", "--image", ref)
	if r.err != nil || len(r.stderr) != 0 {
		t.Fatalf("redirected stderr: %v %q, want silence", r.err, r.stderr)
	}
}

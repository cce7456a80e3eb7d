// Package testregistry runs a real container registry (Debian's docker-registry, the CNCF
// distribution server) on a loopback port for the duration of one test.
//
// Tests use it rather than an in-process fake where the real server's behaviour matters:
// chunked uploads, manifest validation, media types, what skopeo talks to. It is required, not
// optional: a machine without docker-registry fails the test with the install hint, so that CI
// cannot go green by skipping.
package testregistry

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is the registry executable looked up in PATH.
const Binary = "docker-registry"

// Registry is one running registry process with its own storage directory.
type Registry struct {
	host    string
	root    string
	cmd     *exec.Cmd
	stderr  *lockedBuffer
	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
}

// Start launches `docker-registry serve` on 127.0.0.1 with storage under t.TempDir() and
// returns once GET /v2/ answers. The registry is stopped by t.Cleanup.
func Start(t testing.TB) *Registry {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		t.Fatalf("testregistry: %s not found in PATH: install it (Debian: apt-get install docker-registry)", Binary)
	}
	var lastErr error
	// The free port is found by binding and releasing it, so another process may take it in
	// between: retry a few times with a new port.
	for attempt := 0; attempt < 3; attempt++ {
		r, err := start(t, bin)
		if err == nil {
			t.Cleanup(r.Stop)
			return r
		}
		lastErr = err
	}
	t.Fatalf("testregistry: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*Registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "storage")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`, root, host)
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return nil, err
	}

	r := &Registry{host: host, root: root, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	r.cmd = exec.Command(bin, "serve", configPath)
	r.cmd.Env = registryEnv()
	r.cmd.Stdout = r.stderr
	r.cmd.Stderr = r.stderr
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		close(r.exited)
	}()

	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-r.exited:
			return nil, fmt.Errorf("%s exited before answering (%v): %s", Binary, r.waitErr, r.stderr.String())
		default:
		}
		resp, err := client.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, fmt.Errorf("%s on %s did not answer GET /v2/ within 15s (last error %v): %s", Binary, host, err, r.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Host is "127.0.0.1:PORT", the registry part of references such as docker://HOST/repo:tag.
func (r *Registry) Host() string { return r.host }

// StorageDir is the registry's filesystem storage root (for tests that corrupt blobs).
func (r *Registry) StorageDir() string { return r.root }

// Logs returns what the registry printed so far (warnings and errors only).
func (r *Registry) Logs() string { return r.stderr.String() }

// Stop ends the registry; later requests to Host fail with "connection refused", which is how
// tests check behaviour when a registry goes away. It is safe to call more than once.
func (r *Registry) Stop() {
	r.stopOnce.Do(func() {
		if r.cmd.Process == nil {
			return
		}
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(5 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	})
}

// registryEnv drops REGISTRY_* variables: distribution reads them as configuration overrides.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Keep the log bounded: a chatty registry must not grow test memory without limit.
	if b.buf.Len() > 1<<20 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

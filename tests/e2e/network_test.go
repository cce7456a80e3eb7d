package e2e

import (
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/rehydrator/rehydrator/internal/testregistry"
	"github.com/rehydrator/rehydrator/ociimage"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// bigBlob is the size from which the fault proxy treats a blob as a data layer (the config and
// the metadata layer are far smaller), so faults hit rehydration, not opening the image.
const bigBlob = 64 << 10

// fault is what the proxy does to one GET of a data layer.
type fault struct {
	status int   // answer this status instead of forwarding (0: forward)
	cut    int64 // forward this many body bytes, then drop the connection (-1: all)
}

var pass = fault{cut: -1}

// faultProxy is an HTTP proxy on 127.0.0.1 in front of a real registry. It forwards every
// request and applies rule to the GETs of data layers; nth counts the GETs of one blob from 1.
type faultProxy struct {
	host     string
	upstream string

	mu    sync.Mutex
	rule  func(nth int) fault
	count map[string]int
	log   []string // "sha256:... range=bytes=N-" of every blob GET
}

func startFaultProxy(t *testing.T, upstream string) *faultProxy {
	t.Helper()
	p := &faultProxy{upstream: upstream, rule: func(int) fault { return pass }, count: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.host = l.Addr().String()
	srv := &http.Server{Handler: p, ErrorLog: nil}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return p
}

// setRule replaces the rule and forgets what was fetched so far.
func (p *faultProxy) setRule(rule func(nth int) fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule, p.count, p.log = rule, map[string]int{}, nil
}

// fetched returns the blob digests GET so far, sorted, and the request log.
func (p *faultProxy) fetched() ([]string, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ds []string
	for d := range p.count {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	return ds, append([]string(nil), p.log...)
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host, out.Host = "http", p.upstream, p.upstream
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	f := pass
	if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
		d := r.URL.Path[i+len("/blobs/"):]
		p.mu.Lock()
		p.count[d]++
		p.log = append(p.log, d+" range="+r.Header.Get("Range"))
		if resp.ContentLength >= bigBlob || r.Header.Get("Range") != "" {
			f = p.rule(p.count[d])
		}
		p.mu.Unlock()
	}
	if f.status != 0 {
		http.Error(w, http.StatusText(f.status), f.status)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if f.cut < 0 {
		io.Copy(w, resp.Body)
		return
	}
	io.CopyN(w, resp.Body, f.cut)
	w.(http.Flusher).Flush()
	// Drop the connection mid-body, as a failing link or a crashed server would.
	panic(http.ErrAbortHandler)
}

// TestRegistryFaults rehydrates from a real registry through a proxy that drops connections
// and answers 500: rehydrate resumes with Range requests, retries, or fails with one line and
// leaves nothing at the final path. It also checks that only the layers asked for are pulled.
func TestRegistryFaults(t *testing.T) {
	reg := testregistry.Start(t)
	layoutRef, sm := sharedLayout(t)
	pushShared(t, reg.Host(), "fcos/images:stable")
	proxy := startFaultProxy(t, reg.Host())
	ref := "docker://" + proxy.host + "/fcos/images:stable"
	layers := layerDigests(t, strings.TrimSuffix(strings.TrimPrefix(layoutRef, "oci:"), ":stable"))

	t.Run("only the needed layers", func(t *testing.T) {
		proxy.setRule(func(int) fault { return pass })
		checkOne(t, ref, sm, "qemu")
		got, _ := proxy.fetched()
		baseline := layers[baselineBlob(t, layoutRef)]
		want := []string{layers["metadata"], baseline, layers["config"]}
		sort.Strings(want)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("--disk qemu fetched %v, want only the config, metadata and baseline layers %v", got, want)
		}
		proxy.setRule(func(int) fault { return pass })
		checkOne(t, ref, sm, "openstack")
		if got, _ := proxy.fetched(); len(got) != 4 {
			t.Fatalf("--disk openstack fetched %d blobs %v, want 4 (config, metadata, baseline, its delta) of %d", len(got), got, len(layers))
		}
	})

	t.Run("dropped connection resumes", func(t *testing.T) {
		const cut = 100 << 10
		proxy.setRule(func(nth int) fault {
			if nth == 1 {
				return fault{cut: cut}
			}
			return pass
		})
		checkOne(t, ref, sm, "openstack")
		_, log := proxy.fetched()
		if !strings.Contains(strings.Join(log, "\n"), "range=bytes="+strconv.Itoa(cut)+"-") {
			t.Fatalf("no Range request resumed the blob at byte %d:\n%s", cut, strings.Join(log, "\n"))
		}
	})

	t.Run("500 then success", func(t *testing.T) {
		proxy.setRule(func(nth int) fault {
			if nth <= 2 {
				return fault{status: http.StatusInternalServerError}
			}
			return pass
		})
		checkOne(t, ref, sm, "openstack")
	})

	t.Run("500 every time", func(t *testing.T) {
		proxy.setRule(func(int) fault { return fault{status: http.StatusInternalServerError} })
		out := t.TempDir()
		mustFail(t, nil, "500 Internal Server Error", "rehydrate", out, "--disk", "openstack", "--image", ref)
		assertOnly(t, out)
	})

	t.Run("cut every time", func(t *testing.T) {
		proxy.setRule(func(int) fault { return fault{cut: 0} })
		out := t.TempDir()
		mustFail(t, nil, "gave up after", "rehydrate", out, "--disk", "metal", "--image", ref)
		assertOnly(t, out)
	})

	t.Run("cut mid-blob every time to stdout", func(t *testing.T) {
		// Each connection brings 4 MiB more: a slow link that keeps moving completes.
		proxy.setRule(func(int) fault { return fault{cut: 4 << 20} })
		r := run(t, nil, "rehydrate", "-", "--disk", "qemu", "--image", ref)
		if r.err != nil {
			t.Fatalf("%v: %s", r.err, r.stderr)
		}
		if got := sha256hex(r.stdout); got != find(t, sm, "qemu").UncompressedSHA256 {
			t.Fatalf("qemu through a link cut every 4 MiB: sha256 %s", got)
		}
	})
}

// baselineBlob is the blob the qemu disk's recipe starts from: the baseline as stored (through
// the x86 filter, so not the digest of qemu.qcow2 itself).
func baselineBlob(t *testing.T, ref string) string {
	t.Helper()
	src, err := ociimage.Open(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rj, _, err := src.Metadata(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r, err := rehydrate.ParseRecipe(rj)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range r.Artifacts {
		if a.Disk == "qemu" {
			return a.Steps[0].Blob
		}
	}
	t.Fatal("the recipe has no qemu disk")
	return ""
}

// layerDigests maps the blob each layer of the layout's only image carries to the layer's
// digest, with "metadata" and "config" for those two.
func layerDigests(t *testing.T, dir string) map[string]string {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{"config": m.Config.Digest.String()}
	for _, l := range m.Layers {
		switch {
		case l.Annotations[ociimage.LayerKindAnnotation] == "metadata":
			out["metadata"] = l.Digest.String()
		case l.Annotations[ociimage.BlobAnnotation] != "":
			out[l.Annotations[ociimage.BlobAnnotation]] = l.Digest.String()
		}
	}
	return out
}

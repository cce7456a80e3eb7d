package ociimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/rehydrator/rehydrator/internal/ctxio"
)

// tarEntry is one regular file of a layer; directories are added for every parent.
type tarEntry struct {
	name string // relative, e.g. usr/bin/rehydrator
	mode int64
	size int64
	open func() (io.ReadCloser, error)
	// wantSHA256, when set, is checked while copying: a blob file that changed after it was
	// hashed must not end up in the image under its old name.
	wantSHA256 string
}

func bytesEntry(name string, data []byte) tarEntry {
	return tarEntry{name: name, mode: 0o644, size: int64(len(data)), open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(string(data))), nil
	}}
}

func fileEntry(name, file string, mode, size int64, wantSHA256 string) tarEntry {
	return tarEntry{name: name, mode: mode, size: size, wantSHA256: wantSHA256, open: func() (io.ReadCloser, error) {
		return os.Open(file)
	}}
}

// writeLayerTar writes a deterministic tar: entries sorted by name, parent directories
// first, owner 0:0, fixed modes, every time set to mtime.
func writeLayerTar(ctx context.Context, w io.Writer, mtime time.Time, entries []tarEntry) error {
	dirs := map[string]bool{}
	for _, e := range entries {
		for d := path.Dir(e.name); d != "." && d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	type item struct {
		name string
		dir  bool
		e    tarEntry
	}
	var items []item
	for d := range dirs {
		items = append(items, item{name: d + "/", dir: true})
	}
	for _, e := range entries {
		items = append(items, item{name: e.name, e: e})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })

	tw := tar.NewWriter(w)
	for _, it := range items {
		hdr := &tar.Header{
			Name:    it.name,
			ModTime: mtime,
			Uid:     0,
			Gid:     0,
			Format:  tar.FormatPAX,
		}
		if it.dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Mode = 0o755
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Mode = it.e.mode
			hdr.Size = it.e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", it.name, err)
		}
		if it.dir {
			continue
		}
		if err := copyEntry(ctx, tw, it.e); err != nil {
			return fmt.Errorf("tar %s: %w", it.name, err)
		}
	}
	return tw.Close()
}

func copyEntry(ctx context.Context, tw io.Writer, e tarEntry) error {
	rc, err := e.open()
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	var dst io.Writer = tw
	if e.wantSHA256 != "" {
		dst = io.MultiWriter(tw, h)
	}
	buf := make([]byte, 1<<20)
	n, err := io.CopyBuffer(dst, io.LimitReader(ctxio.Reader(ctx, rc), e.size), buf)
	if err != nil {
		return err
	}
	if n != e.size {
		return fmt.Errorf("file shrank while it was read: %d bytes, expected %d", n, e.size)
	}
	if e.wantSHA256 != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != e.wantSHA256 {
			return fmt.Errorf("file changed while the image was built (sha256 now %s, was %s)", got, e.wantSHA256)
		}
	}
	return nil
}

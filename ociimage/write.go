package ociimage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/rehydrator/rehydrator/internal/ctxio"
)

// Write stores img at ref and returns its manifest digest ("sha256:<hex>"):
//
//	oci:PATH[:TAG]                 an OCI layout, created if missing; an image already there
//	                               with the same TAG (or, without TAG, with no tag) is replaced
//	docker-archive:PATH[:NAME:TAG] a docker-archive file (replaced atomically)
//	docker://HOST/REPO:TAG         a registry (plain http for localhost and 127.0.0.1);
//	                               credentials as docker and podman store them
//
// A docker-archive keeps no manifest; the digest returned is still the one a registry or
// layout would show.
func Write(ctx context.Context, ref string, img v1.Image) (string, error) {
	r, err := parseRef(ref)
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("write %s: %w", ref, err)
	}
	switch r.transport {
	case transportOCI:
		err = writeLayout(ctx, r, []v1.Image{img}, func(p layout.Path, m match.Matcher, opts ...layout.Option) error {
			return p.ReplaceImage(img, m, opts...)
		})
	case transportArchive:
		err = writeArchive(ctx, r, img, d)
	case transportDocker:
		if err = remote.Write(r.docker, img, remoteOptions(ctx)...); err != nil {
			err = explainRemote(err, r.docker)
		}
	default:
		err = fmt.Errorf("cannot write to %s: (only docker://, oci: and docker-archive:)", r.transport)
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", ref, err)
	}
	return d.String(), nil
}

func remoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("rehydrator"),
		// rehydrate may hold several blob streams open at once; go-containerregistry
		// limits open fetches to the job count and would block the next open.
		remote.WithJobs(16),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
	}
}

// writeLayout links the layer files of imgs into the OCI layout at r and has replace put the
// image or index there under r's tag, replacing the one that had that tag (or no tag).
func writeLayout(ctx context.Context, r imageRef, imgs []v1.Image, replace func(layout.Path, match.Matcher, ...layout.Option) error) error {
	p, err := openOrCreateLayout(r.path)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		if err := linkLayerFiles(ctx, p, img); err != nil {
			return err
		}
	}
	var opts []layout.Option
	matcher := func(d v1.Descriptor) bool { _, ok := d.Annotations[annotationRefName]; return !ok }
	if r.tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{annotationRefName: r.tag}))
		matcher = match.Annotation(annotationRefName, r.tag)
	}
	return replace(p, matcher, opts...)
}

func openOrCreateLayout(dir string) (layout.Path, error) {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		return layout.FromPath(dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if len(entries) > 0 {
		return "", fmt.Errorf("%s exists and is not an OCI layout (no index.json): give an empty or new directory", dir)
	}
	return layout.Write(dir, empty.Index)
}

// linkLayerFiles hard-links the compressed layer files that Build left in its work directory
// into the layout, so that a multi-GB layer is not copied a second time. Anything that cannot
// be linked (another filesystem, an image not from Build) is copied by layout as usual.
func linkLayerFiles(ctx context.Context, p layout.Path, img v1.Image) error {
	bi, ok := img.(*builtImage)
	if !ok {
		return nil
	}
	dir := filepath.Join(string(p), "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, l := range bi.files {
		if err := ctx.Err(); err != nil {
			return err
		}
		dst := filepath.Join(dir, l.digest.Hex)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		_ = os.Link(l.path, dst)
	}
	return nil
}

func writeArchive(ctx context.Context, r imageRef, img v1.Image, d v1.Hash) (err error) {
	var ref name.Reference
	if r.tag != "" {
		if ref, err = name.NewTag(r.tag); err != nil {
			return err
		}
	} else if ref, err = name.NewDigest("rehydrator@" + d.String()); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(r.path), "."+filepath.Base(r.path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := tarball.Write(ref, img, ctxio.Writer(ctx, bw)); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), r.path)
}

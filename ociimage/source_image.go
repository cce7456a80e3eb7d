package ociimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func hostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// configAndLayers returns what imageSource needs from a go-containerregistry image.
func configAndLayers(img v1.Image) (*v1.ConfigFile, *v1.Manifest, string, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, "", fmt.Errorf("manifest: %w", err)
	}
	// An OCI layout reads the config file without checking it; the diffIDs in it are what
	// ties a signed manifest to the metadata layer, so the bytes parsed are checked here, for
	// every transport.
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, nil, "", fmt.Errorf("config: %w", err)
	}
	if h, _, _ := v1.SHA256(bytes.NewReader(raw)); h != m.Config.Digest {
		return nil, nil, "", fmt.Errorf("config hashes to %s, the manifest says %s: the image is damaged", h, m.Config.Digest)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, "", fmt.Errorf("config: %w", err)
	}
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return nil, nil, "", fmt.Errorf("manifest has %d layers but config %d diffIDs: the image is damaged", len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	d, err := img.Digest()
	if err != nil {
		return nil, nil, "", err
	}
	return cfg, m, d.String(), nil
}

func openLayout(ctx context.Context, r imageRef, platform v1.Platform) (Source, error) {
	img, err := layoutImage(r, platform)
	if err != nil {
		return nil, err
	}
	cfg, m, digest, err := configAndLayers(img)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	p := layout.Path(r.path)
	open := func(ctx context.Context, i int) (io.ReadCloser, error) { return p.Blob(m.Layers[i].Digest) }
	return newImageSource(ctx, r.String(), digest, cfg, open)
}

// layoutImage finds the image named by r in an OCI layout: by its ref.name annotation, or the
// only one; an index is resolved to the image for platform.
func layoutImage(r imageRef, platform v1.Platform) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(r.path)
	if err != nil {
		return nil, fmt.Errorf("%s: not an OCI layout (%v): give the directory that holds index.json", r, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", r, err)
	}
	var tags []string
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		tag := d.Annotations[annotationRefName]
		if tag != "" {
			tags = append(tags, tag)
		}
		if r.tag == "" || tag == r.tag {
			found = append(found, d)
		}
	}
	sort.Strings(tags)
	switch {
	case len(found) == 0 && r.tag != "":
		return nil, fmt.Errorf("%s: no image tagged %q in the layout (tags: %s)", r, r.tag, listOrNone(tags))
	case len(found) == 0:
		return nil, fmt.Errorf("%s: the layout holds no image", r)
	case len(found) > 1 && r.tag == "":
		return nil, fmt.Errorf("%s: the layout holds %d images: add :TAG (tags: %s)", r, len(found), listOrNone(tags))
	}
	d := found[0]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
		d, err = platformManifest(child, platform)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
		img, err := child.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r, err)
		}
		return img, nil
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, err)
	}
	return img, nil
}

func platformManifest(idx v1.ImageIndex, platform v1.Platform) (v1.Descriptor, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	var have []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			continue
		}
		if d.Platform.Satisfies(platform) {
			return d, nil
		}
		have = append(have, d.Platform.String())
	}
	return v1.Descriptor{}, fmt.Errorf("no image for %s in the index (it has: %s)", platform.String(), listOrNone(have))
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func openRemote(ctx context.Context, r imageRef, platform v1.Platform) (Source, error) {
	p, err := remote.NewPuller(append(remoteOptions(ctx), remote.WithPlatform(platform))...)
	if err != nil {
		return nil, err
	}
	desc, err := p.Get(ctx, r.docker)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, explainRemote(err, r.docker))
	}
	var img v1.Image
	if desc.MediaType.IsIndex() {
		img, err = indexImage(desc, platform)
	} else {
		img, err = desc.Image()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, explainRemote(err, r.docker))
	}
	cfg, m, digest, err := configAndLayers(img)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, explainRemote(err, r.docker))
	}
	f, err := newBlobFetcher(ctx, r.docker.Context())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r, explainRemote(err, r.docker))
	}
	open := func(ctx context.Context, i int) (io.ReadCloser, error) {
		rc, err := f.open(ctx, m.Layers[i])
		if err != nil {
			return nil, explainRemote(err, r.docker)
		}
		return rc, nil
	}
	return newImageSource(ctx, r.String(), digest, cfg, open)
}

// explainRemote turns the registry errors a user can act on into a sentence saying what to do.
func explainRemote(err error, ref name.Reference) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		for _, e := range terr.Errors {
			switch e.Code {
			case transport.ManifestUnknownErrorCode:
				return fmt.Errorf("no image %q in repository %s (check the tag or digest): %w", ref.Identifier(), ref.Context().Name(), err)
			case transport.NameUnknownErrorCode:
				return fmt.Errorf("no repository %s on %s (check the name): %w", ref.Context().RepositoryStr(), ref.Context().RegistryStr(), err)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return fmt.Errorf("access denied by %s: log in (podman login / docker login) or check the name: %w", ref.Context().RegistryStr(), err)
			}
		}
		switch terr.StatusCode {
		case 404:
			return fmt.Errorf("%s not found on %s (check the name and tag): %w", ref, ref.Context().RegistryStr(), err)
		case 401, 403:
			return fmt.Errorf("access denied by %s: log in (podman login / docker login) or check the name: %w", ref.Context().RegistryStr(), err)
		}
	}
	var nerr net.Error
	var oerr *net.OpError
	if errors.As(err, &oerr) || errors.As(err, &nerr) {
		return fmt.Errorf("cannot reach registry %s (check the host and port, and the network): %w", ref.Context().RegistryStr(), err)
	}
	return err
}

// readBaseImage reads the image to build on (BuildSpec.Base), in any transport we write.
func readBaseImage(ctx context.Context, ref string, platform v1.Platform) (v1.Image, error) {
	r, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	switch r.transport {
	case transportDocker:
		opts := append(remoteOptions(ctx), remote.WithPlatform(platform))
		img, err := remote.Image(r.docker, opts...)
		if err != nil {
			return nil, explainRemote(err, r.docker)
		}
		return img, nil
	case transportOCI:
		return layoutImage(r, platform)
	case transportArchive:
		var tag *name.Tag
		if r.tag != "" {
			if strings.HasPrefix(r.tag, "@") {
				return nil, fmt.Errorf("%s: a base docker-archive is chosen by NAME:TAG, not by @INDEX", r)
			}
			t, err := name.NewTag(r.tag)
			if err != nil {
				return nil, err
			}
			tag = &t
		}
		return tarball.ImageFromPath(r.path, tag)
	}
	return nil, fmt.Errorf("%s: a base image must be docker://, oci: or docker-archive:", r)
}

// indexImage picks platform's image of a remote index, saying which platforms there are.
func indexImage(desc *remote.Descriptor, platform v1.Platform) (v1.Image, error) {
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
	d, err := platformManifest(idx, platform)
	if err != nil {
		return nil, err
	}
	return idx.Image(d.Digest)
}

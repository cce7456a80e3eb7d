package ociimage

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/rehydrator/rehydrator/internal/arch"
)

// ArchPlatform is the OCI platform of a stream-metadata architecture: x86_64 is linux/amd64,
// aarch64 linux/arm64; ppc64le and s390x are spelled alike.
func ArchPlatform(streamArch string) v1.Platform {
	return v1.Platform{OS: "linux", Architecture: arch.GoArch(streamArch)}
}

// WriteIndex stores images of different platforms as one OCI image index at ref (oci: or
// docker://) and returns the index digest. Each image's platform is the one in its config;
// clients (podman, skopeo, rehydrate --arch) pick theirs.
func WriteIndex(ctx context.Context, ref string, imgs []v1.Image) (string, error) {
	r, err := parseRef(ref)
	if err != nil {
		return "", err
	}
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, img := range imgs {
		cfg, err := img.ConfigFile()
		if err != nil {
			return "", fmt.Errorf("write %s: %w", ref, err)
		}
		p := cfg.Platform()
		if p == nil || p.Architecture == "" {
			return "", fmt.Errorf("write %s: an image has no platform in its config", ref)
		}
		if seen[p.String()] {
			return "", fmt.Errorf("write %s: two images for %s: give one release per architecture", ref, p)
		}
		seen[p.String()] = true
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	d, err := idx.Digest()
	if err != nil {
		return "", fmt.Errorf("write %s: %w", ref, err)
	}
	switch r.transport {
	case transportOCI:
		err = writeLayout(ctx, r, imgs, func(p layout.Path, m match.Matcher, opts ...layout.Option) error {
			return p.ReplaceIndex(idx, m, opts...)
		})
	case transportDocker:
		if err = remote.WriteIndex(r.docker, idx, remoteOptions(ctx)...); err != nil {
			err = explainRemote(err, r.docker)
		}
	default:
		err = fmt.Errorf("a %s: holds one platform: write several architectures to oci: or docker://", r.transport)
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", ref, err)
	}
	return d.String(), nil
}

// checkBasePlatform refuses a base image made for another platform than the one being built.
func checkBasePlatform(base v1.Image, want v1.Platform) error {
	cfg, err := base.ConfigFile()
	if err != nil {
		return err
	}
	if cfg.Architecture != "" && cfg.Architecture != want.Architecture {
		return fmt.Errorf("it is built for %s/%s, not %s: give a base for %s (an index or an image of that architecture)", cfg.OS, cfg.Architecture, want, want)
	}
	return nil
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/dehydrate"
	"github.com/rehydrator/rehydrator/internal/arch"
	"github.com/rehydrator/rehydrator/ociimage"
	"github.com/rehydrator/rehydrator/streammeta"
)

// buildOpts is what "build" does with each release directory, one or several.
type buildOpts struct {
	workDir, baseline, from, binary string
	archBinaries                    []string
	jobs                            int
	comp                            ociimage.Compression
	say                             func(string)
	several                         bool // one release per architecture, for an index
}

// releaseImage dehydrates the release in dir (the i-th of build's arguments) and builds its
// image: the one path of build, with one release or several.
func releaseImage(ctx context.Context, dir string, i int, o buildOpts) (v1.Image, *dehydrate.Result, error) {
	platform, bin, err := imageTool(dir, o.from, o.binary, o.archBinaries)
	if err != nil {
		return nil, nil, err
	}
	res, err := dehydrate.Dehydrate(ctx, dir, dehydrate.Options{
		WorkDir: filepath.Join(o.workDir, fmt.Sprintf("dehydrate-%d", i)), Baseline: o.baseline, Jobs: o.jobs,
		Generator: "rehydrator " + version, Progress: o.say,
	})
	if err != nil {
		return nil, nil, err
	}
	recipe, err := res.Recipe.Marshal()
	if err != nil {
		return nil, nil, err
	}
	layerDir := filepath.Join(o.workDir, fmt.Sprintf("layers-%d", i))
	if err := os.MkdirAll(layerDir, 0o755); err != nil {
		return nil, nil, err
	}
	a := res.Recipe.Arches()[0]
	if o.several {
		o.say(fmt.Sprintf("writing image layers for %s", a))
	} else {
		o.say("writing image layers")
	}
	img, err := ociimage.Build(ctx, ociimage.BuildSpec{
		Binary: bin, Base: o.from, Blobs: res.Blobs(), Recipe: recipe, StreamJSON: res.StreamJSON,
		Compression: o.comp, Platform: platform, Progress: o.say,
	}, layerDir)
	if err != nil {
		if o.several {
			err = fmt.Errorf("release %s (%s): %w", dir, a, err)
		}
		return nil, nil, err
	}
	return img, res, nil
}

// buildIndex makes the image of each release and writes an OCI image index over them.
func buildIndex(cmd *cobra.Command, dirs []string, output string, o buildOpts) error {
	ctx := cmd.Context()
	start := time.Now()
	var imgs []v1.Image
	seen := map[string]string{}
	for i, dir := range dirs {
		img, res, err := releaseImage(ctx, dir, i, o)
		if err != nil {
			return err
		}
		a := res.Recipe.Arches()[0]
		if prev, ok := seen[a]; ok {
			return fmt.Errorf("releases %s and %s are both for %s: give one release directory per architecture", prev, dir, a)
		}
		seen[a] = dir
		imgs = append(imgs, img)
	}
	digest, err := ociimage.WriteIndex(ctx, output, imgs)
	if err != nil {
		return err
	}
	o.say(fmt.Sprintf("built %s in %s: an index of %d architectures", output, time.Since(start).Round(time.Second), len(imgs)))
	fmt.Fprintln(cmd.OutOrStdout(), digest)
	return nil
}

// imageTool returns the platform of the image for the release in dir (its stream.json's one
// architecture) and the tool binary for it: binary for this machine's architecture, an
// --arch-binary for another, none on a --from base. It runs before the long dehydration.
func imageTool(dir, from, binary string, archBinaries []string) (platform, bin string, err error) {
	raw, err := os.ReadFile(filepath.Join(dir, "stream.json"))
	if err != nil {
		return "", binary, nil // dehydrate says what is wrong with the release
	}
	rel, err := streammeta.Parse(raw)
	if err != nil {
		return "", binary, nil
	}
	set := map[string]bool{}
	var arches []string
	for _, a := range rel.Artifacts {
		if !set[a.Arch] {
			set[a.Arch] = true
			arches = append(arches, a.Arch)
		}
	}
	if len(arches) != 1 {
		return "", "", fmt.Errorf("release %s: its stream.json has %d architectures (%s): give one release directory per architecture", dir, len(arches), strings.Join(arches, ", "))
	}
	a := arches[0]
	binaries := map[string]string{arch.Machine(): binary}
	for _, ab := range archBinaries {
		name, path, ok := strings.Cut(ab, "=")
		if !ok || name == "" || path == "" {
			return "", "", usagef("--arch-binary %q: want ARCH=PATH, e.g. aarch64=./rehydrator.arm64", ab)
		}
		binaries[name] = path
	}
	platform = ociimage.ArchPlatform(a).String()
	if from != "" {
		return platform, "", nil
	}
	if binaries[a] == "" {
		return "", "", usagef("the image of %s needs a static rehydrator binary for %s: give --arch-binary %s=PATH (e.g. GOARCH=%s CGO_ENABLED=0 go build ./cmd/rehydrator)", dir, a, a, arch.GoArch(a))
	}
	return platform, binaries[a], nil
}

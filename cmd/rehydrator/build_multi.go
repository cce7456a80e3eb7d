package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/dehydrate"
	"github.com/rehydrator/rehydrator/ociimage"
	"github.com/rehydrator/rehydrator/rehydrate"
)

// multiBuild is what "build" passes on when it is given one release per architecture.
type multiBuild struct {
	workDir, baseline, from, binary string
	archBinaries                    []string
	jobs                            int
	comp                            ociimage.Compression
	say                             func(string)
	quiet                           bool
}

// buildIndex dehydrates each release into an image for its architecture and writes an OCI
// image index over them.
func buildIndex(cmd *cobra.Command, dirs []string, output string, o multiBuild) error {
	ctx := cmd.Context()
	start := time.Now()
	binaries := map[string]string{rehydrate.MachineArch(): o.binary}
	for _, ab := range o.archBinaries {
		arch, path, ok := strings.Cut(ab, "=")
		if !ok || arch == "" || path == "" {
			return usagef("--arch-binary %q: want ARCH=PATH, e.g. aarch64=./rehydrator.arm64", ab)
		}
		binaries[arch] = path
	}
	var imgs []v1.Image
	seen := map[string]string{}
	for i, dir := range dirs {
		res, err := dehydrate.Dehydrate(ctx, dir, dehydrate.Options{
			WorkDir: filepath.Join(o.workDir, fmt.Sprintf("dehydrate-%d", i)), Baseline: o.baseline, Jobs: o.jobs,
			Generator: "rehydrator " + version, Progress: o.say,
		})
		if err != nil {
			return err
		}
		arches := res.Recipe.Arches()
		if len(arches) != 1 {
			return fmt.Errorf("release %s: its stream.json has %d architectures (%s): give one release directory per architecture", dir, len(arches), strings.Join(arches, ", "))
		}
		arch := arches[0]
		if prev, ok := seen[arch]; ok {
			return fmt.Errorf("releases %s and %s are both for %s: give one release directory per architecture", prev, dir, arch)
		}
		seen[arch] = dir
		bin := binaries[arch]
		if o.from == "" && bin == "" {
			return usagef("the %s image needs a static rehydrator binary for %s: give --arch-binary %s=PATH (e.g. GOARCH=%s CGO_ENABLED=0 go build ./cmd/rehydrator)", dir, arch, arch, ociimage.ArchPlatform(arch).Architecture)
		}
		recipe, err := res.Recipe.Marshal()
		if err != nil {
			return err
		}
		layerDir := filepath.Join(o.workDir, fmt.Sprintf("layers-%d", i))
		if err := os.MkdirAll(layerDir, 0o755); err != nil {
			return err
		}
		o.say(fmt.Sprintf("writing image layers for %s", arch))
		img, err := ociimage.Build(ctx, ociimage.BuildSpec{
			Binary: bin, Base: o.from, Blobs: res.Blobs(), Recipe: recipe, StreamJSON: res.StreamJSON,
			Compression: o.comp, Platform: ociimage.ArchPlatform(arch).String(), Progress: o.say,
		}, layerDir)
		if err != nil {
			return fmt.Errorf("release %s (%s): %w", dir, arch, err)
		}
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

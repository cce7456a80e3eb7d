package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/ociimage"
)

func newBuildCmd() *cobra.Command {
	var (
		output, from, workDir, baseline, binary, compression, report string
		level, jobs                                                  int
		keepWork, quiet                                              bool
		signKey, identity                                            string
		archBinaries                                                 []string
		stream                                                       streamFlags
	)
	cmd := &cobra.Command{
		Use:   "build {RELEASE_DIR... | --stream FILE|URL} --output REF",
		Short: "Dehydrate a release directory (stream.json + shipped files) into one image",
		Long: `Reads RELEASE_DIR/stream.json and every file it lists (named as the last element of its
location), checks each file's sha256 and, after decompression, its uncompressed-sha256, and
refuses a release that does not match. It then stores the qemu qcow2 as the baseline, every other
disk as a delta against it where that is cheap (else whole), re-runs every recipe and compares
SHA-256 before it writes anything, and writes the image to REF:

  oci:PATH[:TAG]  docker-archive:PATH  docker://HOST/REPO:TAG

Layers are zstd-compressed by default (part of the OCI spec; read by podman, skopeo, docker);
--compression gzip writes gzip layers for older clients. Levels above 11 use the zstd(1) program
when it is installed (long window, much smaller baseline), else the best Go encoder.
The same inputs give the same image digest.

Several RELEASE_DIRs, one per architecture (x86_64, aarch64, ...: the architecture of each
stream.json), make one image per architecture and an OCI image index over them (oci: or
docker://); "rehydrate --arch" and podman pick theirs. The tool layer of an architecture other
than this machine's needs that architecture's static binary: --arch-binary aarch64=PATH.

--stream FILE|URL builds from a stream.json instead: it downloads the files of the chosen
architectures (--arch, default this machine's) into --cache, checks each sha256 while it streams
(and its .sig with --verify-gpg KEYRING), resumes cut downloads, skips what the cache holds, and
builds the release directories it made there. --dry-run lists the artifacts and downloads nothing.`,
		Example: `  rehydrator build ./release --output oci:./fcos-images:stable
  rehydrator build ./release --output docker://registry.example:5000/fcos-images:stable --compression gzip
  rehydrator build --stream https://builds.coreos.fedoraproject.org/streams/stable.json --verify-gpg fedora.gpg --output oci:./fcos-images:stable
  rehydrator build ./x86_64 ./aarch64 --arch-binary aarch64=./rehydrator.arm64 --output oci:./fcos-images:stable`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := stream.check(cmd, args); err != nil {
				return err
			}
			if len(args) == 0 && stream.src == "" {
				return usagef("build takes a RELEASE_DIR (one per architecture) or --stream, got none")
			}
			if (len(args) > 1 || len(stream.arches) > 1) && report != "" {
				return usagef("--report takes one RELEASE_DIR, got %d", len(args))
			}
			if output == "" && !stream.dryRun {
				return usagef("build needs --output REF (oci:PATH[:TAG], docker-archive:PATH or docker://HOST/REPO:TAG)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			if stream.src != "" {
				if args, err = stream.releaseDirs(cmd, quiet); err != nil || args == nil {
					return err // args == nil: --dry-run printed the artifacts
				}
			}
			ctx := cmd.Context()
			say := func(msg string) {
				if !quiet {
					fmt.Fprintln(os.Stderr, msg)
				}
			}
			comp, err := layerCompression(compression, level)
			if err != nil {
				return usageError{err}
			}
			var sign *signer
			if signKey != "" {
				if sign, err = loadSigner(signKey, identity, output); err != nil {
					return err
				}
			}
			if binary == "" && from == "" {
				if binary, err = os.Executable(); err != nil {
					return fmt.Errorf("cannot find this program's binary for the image's tool layer: %w (give --binary)", err)
				}
			}
			if workDir == "" {
				if workDir, err = os.MkdirTemp("", "rehydrator-build-"); err != nil {
					return err
				}
				if !keepWork {
					defer os.RemoveAll(workDir)
				}
			}
			start := time.Now()
			o := buildOpts{
				workDir: workDir, baseline: baseline, jobs: jobs, from: from, binary: binary,
				archBinaries: archBinaries, comp: comp, say: say, several: len(args) > 1,
			}
			if len(args) > 1 {
				return buildIndex(cmd, args, output, o)
			}
			img, res, err := releaseImage(ctx, args[0], 0, o)
			if err != nil {
				return err
			}
			digest, err := ociimage.Write(ctx, output, img)
			if err != nil {
				return err
			}
			if sign != nil {
				if _, err := sign.sign(ctx, output, digest); err != nil {
					return err
				}
			}
			rep, err := makeReport(output, digest, img, res)
			if err != nil {
				return err
			}
			if !quiet {
				rep.print(os.Stderr)
			}
			if report != "" {
				if err := rep.write(report); err != nil {
					return err
				}
			}
			say(fmt.Sprintf("built %s in %s: %d artifacts from %d blobs", output, time.Since(start).Round(time.Second), len(res.Recipe.Artifacts), len(res.Recipe.Blobs)))
			fmt.Fprintln(cmd.OutOrStdout(), digest)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "", "where to write the image (required)")
	f.StringVar(&from, "from", "", "put the release layers on top of this image (e.g. one built from the Containerfile) instead of a tool layer of this binary")
	f.StringVar(&binary, "binary", "", "static rehydrator binary for the tool layer (default: this program)")
	f.StringVar(&compression, "compression", "zstd", "layer compression: zstd or gzip")
	f.IntVar(&level, "level", 0, "compression level (zstd 1-22, default 19; gzip 1-9, default 6)")
	f.StringVar(&baseline, "baseline", "qemu", "platform whose qcow2 disk is stored whole as the base of the deltas")
	f.StringVar(&workDir, "workdir", "", "work directory with room for the whole release uncompressed (default: a new one under $TMPDIR, removed afterwards)")
	f.BoolVar(&keepWork, "keep-workdir", false, "keep the default work directory")
	f.IntVar(&jobs, "jobs", 0, "parallel jobs (default: number of CPUs)")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only the image digest")
	f.StringArrayVar(&archBinaries, "arch-binary", nil, "ARCH=PATH: the static rehydrator binary for another architecture's tool layer (repeatable)")
	f.StringVar(&report, "report", "", "write what each artifact costs in the image (JSON) to this file")
	f.StringVar(&signKey, "sign-key", "", "sign the image with this private key (see \"sign\"); checked before the build starts")
	identityFlag(cmd, &identity)
	stream.register(cmd)
	return cmd
}

// layerCompression turns --compression and --level into the image writer's setting.
func layerCompression(algo string, level int) (ociimage.Compression, error) {
	c, err := ociimage.CompressionFor(algo, level)
	if err != nil {
		// CompressionFor names the setting ("level 99: ...", "compression \"x\": ..."):
		// here it is the flag of that name.
		return c, fmt.Errorf("--%w", err)
	}
	return c, nil
}

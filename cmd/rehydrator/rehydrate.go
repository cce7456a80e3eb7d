package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/rehydrator/rehydrator/rehydrate"
)

func newRehydrateCmd() *cobra.Command {
	var (
		sel     rehydrate.Selection
		ref     string
		tmpDir  string
		noProgr bool
	)
	var verifyKey string
	cmd := &cobra.Command{
		Use:   "rehydrate DEST [--disk PLATFORM]... [--iso] [--pxe] [--all]",
		Short: "Regenerate artifacts bit for bit into a directory or onto standard output",
		Long: `Regenerates the selected artifacts and checks each against the SHA-256 of the stream
metadata while writing it.

DEST is a directory or - (standard output). Into a directory each file is written under a
temporary name and renamed only after its SHA-256 matched: a failure leaves nothing at the final
path. To standard output one artifact is written as itself, several as a tar stream
(| tar xf -); on a failure the stream is cut short and the exit status is not zero.

Output names are the shipped names without .xz/.gz, e.g.
fedora-coreos-40.20261101.3.0-openstack.x86_64.qcow2. See "list" for what the image holds.

With --verify-key PUB nothing is written unless the image (docker:// or oci:) carries a valid
cosign signature by PUB over its manifest digest; the error says whether the signature is
missing, by another key, or for another image (see "verify").`,
		Example: `  podman run --rm -i IMAGE rehydrate - --disk openstack > fcos-openstack.qcow2
  podman run --rm -i IMAGE rehydrate - --iso --disk qemu | tar xf -
  podman run --rm -i -v .:/out IMAGE rehydrate /out --pxe
  rehydrator rehydrate ./out --all --image oci:./fcos-images:stable`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("rehydrate takes exactly one DEST (a directory, or - for standard output), got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			img, err := openImageArch(ctx, ref, sel.Arch)
			if err != nil {
				return err
			}
			defer img.src.Close()
			if verifyKey != "" {
				if err := verifyImage(ctx, ref, img.src, verifyKey); err != nil {
					return err
				}
			}
			arts, err := img.recipe.Select(sel)
			if err != nil {
				return usageError{err}
			}
			eng := rehydrate.NewEngine(img.recipe, img.src, tmpDir)
			defer eng.Close()
			bar := newProgressBar(!noProgr)
			defer bar.finish()
			progress := func(a *rehydrate.Artifact, n int64) { bar.update(a.Name, a.Size, n) }
			if args[0] == "-" {
				if isTerminal(os.Stdout) {
					return usagef("refusing to write disk images to a terminal: redirect standard output (> FILE or | tar xf -) or give a directory")
				}
				return explainWriteErr(eng.WriteStream(ctx, os.Stdout, arts, progress), "-")
			}
			return explainWriteErr(eng.WriteDir(ctx, args[0], arts, progress), args[0])
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&sel.Disks, "disk", nil, "a platform's disk image: qemu, openstack, metal, metal4k, ... (repeatable)")
	f.BoolVar(&sel.ISO, "iso", false, "the metal live ISO")
	f.BoolVar(&sel.PXE, "pxe", false, "the PXE set: kernel, initramfs and rootfs")
	f.BoolVar(&sel.All, "all", false, "every artifact of the architecture")
	f.StringVar(&sel.Arch, "arch", "", "architecture: x86_64, aarch64, ... (default: this machine's, or the image's only one); picks the image of an index")
	f.StringVar(&tmpDir, "tmpdir", "", "where to keep intermediate files some recipes need (default $TMPDIR)")
	f.BoolVar(&noProgr, "no-progress", false, "never draw progress on standard error")
	f.StringVar(&verifyKey, "verify-key", "", "refuse the image unless it carries a valid signature by this public key (see \"verify\")")
	imageFlag(cmd, &ref)
	return cmd
}

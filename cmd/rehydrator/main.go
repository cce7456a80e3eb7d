// Command rehydrator builds ("dehydrates") a Fedora CoreOS release into one OCI image and
// regenerates ("rehydrates") any of its artifacts from that image, bit for bit.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at link time: -ldflags "-X main.version=..."
var version = "dev"

// memoryLimit is the Go runtime's soft limit unless GOMEMLIMIT says otherwise. Rehydrating from a
// zstd layer keeps its 128 MiB window live; by default the collector would let the heap grow to
// twice that before it runs.
const memoryLimit = 192 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "rehydrator: "+oneLine(err))
		os.Exit(exitCode(err))
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "rehydrator",
		Short: "Ship every Fedora CoreOS disk image as one OCI image and regenerate any of them bit for bit",
		Long: `rehydrator stores a whole Fedora CoreOS release (qemu, openstack, metal and every other
platform's disk, the live ISO, the PXE files) as ONE OCI image: the qemu.qcow2 baseline plus small
deltas. "rehydrate" regenerates any artifact on demand and proves it is the one that was tested:
its SHA-256 must equal the uncompressed-sha256 of the stream metadata, or nothing is written.

Inside the image (podman run --rm -i IMAGE ...) it reads its own data from /usr/share/rehydrator.
Outside, --image names where to read from, in skopeo's syntax:
  oci:PATH[:TAG]            an OCI layout directory
  docker-archive:PATH       a docker-archive tarball (docker save / skopeo copy)
  docker://HOST/REPO:TAG    a registry
  dir:PATH                  an unpacked image data directory (like /usr/share/rehydrator)`,
		Example: `  podman run --rm -i IMAGE rehydrate - --disk openstack > fcos-openstack.qcow2
  podman run --rm -i IMAGE rehydrate - --iso --disk qemu | tar xf -
  podman run --rm -i -v .:/out IMAGE rehydrate /out --pxe
  podman run --rm IMAGE print-stream-json
  rehydrator build ./release --output oci:./fcos-images:stable
  rehydrator rehydrate . --disk metal --image oci:./fcos-images:stable`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newBuildCmd(), newRehydrateCmd(), newListCmd(), newPrintStreamJSONCmd(), newPlatformIDCmd())
	root.AddCommand(newKeygenCmd(), newSignCmd(), newVerifyCmd())
	return root
}

// usageError marks bad flags or arguments (exit code 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// oneLine keeps error output to one line, whatever a tool's stderr held.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
}

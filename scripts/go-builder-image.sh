#!/usr/bin/env bash
# Makes a Go builder image from this machine's Go toolchain, for building the Containerfile
# where no registry is reachable (no golang image to pull):
#
#   scripts/go-builder-image.sh localhost/rehydrator-go-builder
#   podman build --build-arg GO_IMAGE=localhost/rehydrator-go-builder -t rehydrator .
#
# The image holds GOROOT (without tests and docs), /bin/sh and the C library sh needs: enough
# for the Containerfile's builder stage, which builds with CGO_ENABLED=0 from vendor/ or the
# module cache. Extra podman options (e.g. --root DIR --storage-driver vfs) go in $PODMAN.
set -euo pipefail
tag=${1:?usage: go-builder-image.sh TAG}
PODMAN=${PODMAN:-podman}
goroot=$(go env GOROOT)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/usr/local" "$root/tmp" "$root/bin" "$root/root"
chmod 1777 "$root/tmp"
tar -C "$(dirname "$goroot")" --exclude=testdata --exclude="$(basename "$goroot")/test" \
    --exclude="$(basename "$goroot")/doc" --exclude="$(basename "$goroot")/api" \
    --exclude="$(basename "$goroot")/misc" --exclude="$(basename "$goroot")/pkg/obj" \
    -cf - "$(basename "$goroot")" | tar -C "$root/usr/local" -xf -
[ "$(basename "$goroot")" = go ] || mv "$root/usr/local/$(basename "$goroot")" "$root/usr/local/go"
# go build needs compile, link, asm, buildid, pack and cgo of the tools; the rest is for humans.
for t in "$root"/usr/local/go/pkg/tool/*/*; do
  case "$(basename "$t")" in compile|link|asm|buildid|pack|cgo) ;; *) rm -rf "$t" ;; esac
done
# /bin/sh and the shared objects it links (ldd prints "name => path" or a bare loader path).
cp -L /bin/sh "$root/bin/sh"
for lib in $(ldd /bin/sh | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
# shellcheck disable=SC2086
$PODMAN import --quiet \
  --change 'ENV PATH=/usr/local/go/bin:/bin' \
  --change 'ENV GOPATH=/root/go' \
  --change 'ENV GOCACHE=/root/.cache/go-build' \
  --change 'ENV GOTOOLCHAIN=local' \
  --change 'WORKDIR /root' \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "$tag"

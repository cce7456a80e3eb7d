#!/usr/bin/env bash
# Makes a Go builder image from this machine's Go toolchain, for building the Containerfile
# where no registry is reachable (no golang image to pull):
#
#   scripts/go-builder-image.sh localhost/rehydrator-go-builder
#   podman build --build-arg GO_IMAGE=localhost/rehydrator-go-builder -t rehydrator .
#
# The image holds GOROOT (without tests and docs), /bin/sh, and this machine's gcc, binutils,
# C library headers and the static zlib, libzstd and liblzma: enough for the Containerfile's builder
# stage, which builds the static cgo binary from vendor/ or the module cache. Extra podman options (e.g. --root DIR --storage-driver vfs) go in $PODMAN.
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
copy_libs() { # copy_libs ELF...: the shared objects each one links
  for elf in "$@"; do
    for lib in $(ldd "$elf" 2>/dev/null | grep -o '/[^ ]*'); do
      [ -e "$root$lib" ] && continue
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
}
copy_libs /bin/sh
# The C toolchain and the static C libraries the release binary links (cgo: zlib for
# vmdk-encode, libzstd for zstd-restore, liblzma for erofs-restore), taken from this machine's Debian packages.
cpkgs=(gcc gcc-12 cpp-12 binutils binutils-x86-64-linux-gnu libc6-dev libc-dev-bin linux-libc-dev
       libgcc-12-dev libcrypt-dev zlib1g-dev libzstd-dev liblzma-dev)
for p in "${cpkgs[@]}"; do
  dpkg -L "$p" 2>/dev/null || { echo "go-builder-image: package $p is missing (scripts/setup-debian.sh installs it)" >&2; exit 1; }
done | while read -r f; do
  if [ -f "$f" ] || [ -L "$f" ]; then
    case "$f" in /usr/share/doc/*|/usr/share/man/*|/usr/share/info/*|/usr/share/locale/*) continue ;; esac
    mkdir -p "$root$(dirname "$f")"
    cp -a "$f" "$root$f"
  fi
done
# Symlinks in the packages may point at files of other packages (the shared libraries the
# static ones stand beside); the tools' own shared objects come from ldd.
copy_libs $(find "$root/usr/bin" "$root/usr/lib/gcc" "$root/usr/libexec" -type f -perm -u+x 2>/dev/null | sed "s#^$root##")
tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$work/rootfs.tar" .
# shellcheck disable=SC2086
$PODMAN import --quiet \
  --change 'ENV PATH=/usr/local/go/bin:/usr/bin:/bin' \
  --change 'ENV GOPATH=/root/go' \
  --change 'ENV GOCACHE=/root/.cache/go-build' \
  --change 'ENV GOTOOLCHAIN=local' \
  --change 'WORKDIR /root' \
  "$work/rootfs.tar" "$tag" >/dev/null
echo "$tag"

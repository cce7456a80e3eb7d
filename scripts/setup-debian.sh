#!/usr/bin/env bash
# Installs what rehydrator's demo and tests use on a fresh Debian 12 machine (idempotent).
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
pkgs=(qemu-utils skopeo docker-registry xorriso squashfs-tools e2fsprogs dosfstools mtools gdisk
      rdiff xz-utils zstd gzip pigz zip unzip busybox libdeflate-tools cpio tar zlib1g-dev libzstd-dev gcc libc6-dev openssl bsdutils podman
      xfsprogs fdisk faketime liblzma-dev genisoimage syslinux-utils isolinux syslinux-common)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker-registry package starts a system registry on :5000; the tests start their own.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
command -v go >/dev/null || { echo "Go 1.25 or newer is needed on PATH (e.g. /usr/local/go/bin)" >&2; exit 1; }
# erofs-utils 1.8.6 with LZMA (Debian 12 has 1.5 without), built once into a cache; see the script.
"$(dirname "$0")/build-erofs-utils.sh" >/dev/null

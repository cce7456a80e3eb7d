#!/usr/bin/env bash
# Builds erofs-utils 1.8.6 (mkfs.erofs, dump.erofs, fsck.erofs) with LZMA into a cache prefix and
# prints its bin directory. Debian 12 ships erofs-utils 1.5 without LZMA, while today's live ISO is
# made with -zlzma: we build trixie's source package against bookworm's liblzma (5.4.1).
# Idempotent: when the three tools are present in the prefix, it only prints the path.
# REHYDRATOR_TOOLS_CACHE overrides the cache root (default /var/cache/rehydrator-tools).
set -euo pipefail
VERSION=1.8.6
ROOT=${REHYDRATOR_TOOLS_CACHE:-/var/cache/rehydrator-tools}
PREFIX=$ROOT/erofs-utils-$VERSION
BIN=$PREFIX/bin
if [ -x "$BIN/mkfs.erofs" ] && [ -x "$BIN/dump.erofs" ] && [ -x "$BIN/fsck.erofs" ]; then
  echo "$BIN"
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

deps=(dpkg-dev build-essential autoconf automake libtool pkg-config liblzma-dev uuid-dev liblz4-dev zlib1g-dev)
missing=()
for p in "${deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# deb-src for trixie in a list of its own, so the machine's binary sources stay bookworm only.
SRCLIST=/etc/apt/sources.list.d/rehydrator-trixie-src.sources
if [ ! -f "$SRCLIST" ]; then
  $SUDO tee "$SRCLIST" >/dev/null <<'LIST'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
LIST
  need_update=1
fi
if [ ${#missing[@]} -gt 0 ] || [ -n "${need_update:-}" ] || ! apt-cache showsrc "erofs-utils=$VERSION-1" >/dev/null 2>&1; then
  $SUDO apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/erofs-utils-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# apt checks the downloaded files against the signed trixie Sources index; dpkg-source then
# only warns that it has no key for the uploader's own signature of the .dsc.
# apt-get source takes an exact version only: pick the newest 1.8.6 Debian revision on offer.
DEBVER=$(apt-cache showsrc erofs-utils | awk -v v="$VERSION-" '/^Version:/ && index($2, v) == 1 {print $2}' | sort -V | tail -1)
[ -n "$DEBVER" ] || { echo "build-erofs-utils: no erofs-utils $VERSION source package in the apt lists (deb-src trixie)" >&2; exit 1; }
apt-get source -o APT::Sandbox::User=root --download-only -qq "erofs-utils=$DEBVER" >&2
dpkg-source -x erofs-utils_"${DEBVER#*:}".dsc src >dpkg-source.log 2>&1 || { cat dpkg-source.log >&2; exit 1; }
cd src
# The release tarball has no configure script; autogen.sh makes it.
./autogen.sh >build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
./configure --prefix="$PREFIX" --enable-lzma --without-selinux --disable-fuse \
  --without-libdeflate --without-libzstd --without-xxhash >>build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
grep -q '^#define HAVE_LIBLZMA 1' config.h || { echo "build-erofs-utils: configure found no liblzma" >&2; exit 1; }
make -j"$(nproc)" >>build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
$SUDO mkdir -p "$BIN"
for t in mkfs/mkfs.erofs dump/dump.erofs fsck/fsck.erofs; do
  $SUDO install -m 0755 "$t" "$BIN/"
done
"$BIN/mkfs.erofs" --version 2>&1 | head -1 >&2
echo "$BIN"

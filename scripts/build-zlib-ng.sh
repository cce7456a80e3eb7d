#!/usr/bin/env bash
# Builds zlib-ng 2.2.2 in zlib-compat mode (a libz.so.1 replacement, as Fedora's zlib-ng-compat
# is) into a cache prefix and prints its lib directory. Running a program with
# LD_LIBRARY_PATH=<that dir> makes its deflate zlib-ng's: tests/fixtures uses it to make the
# VMDK grains and qcow2 clusters the way Fedora's qemu-img does (mkrelease -zlib ng).
# Idempotent: when the library is present in the prefix, it only prints the path.
#
# Source: neither Debian 12 nor 13 packages zlib-ng, and this machine reaches no other archive,
# so the source is given: REHYDRATOR_ZLIB_NG_SRC names either a git repository that has the
# 2.2.2 tag (checked against its commit) or the release tarball zlib-ng-2.2.2.tar.gz (checked
# against its sha256). 2.2.2 is the newest release such a repository held here; Fedora 44 may
# ship a later 2.2.x/2.3.x, whose deflate strategies are the same design (see BENCHMARKS.md).
# REHYDRATOR_TOOLS_CACHE overrides the cache root (default /var/cache/rehydrator-tools).
set -euo pipefail
VERSION=2.2.2
COMMIT=c939498c7f2a1d645833a98251365e2c814fd736
# GitHub's archive of the tag (refs/tags/2.2.2.tar.gz), as other distributions pin it.
TARBALL_SHA256=fcb41dd59a3f17002aeb1bb21f04696c9b721404890bb945c5ab39d2cb69654c
ROOT=${REHYDRATOR_TOOLS_CACHE:-/var/cache/rehydrator-tools}
PREFIX=$ROOT/zlib-ng-compat-$VERSION
LIB=$PREFIX/lib
if [ -e "$LIB/libz.so.1" ] && [ -e "$PREFIX/VERSION" ]; then
  echo "$LIB"
  exit 0
fi
SRC=${REHYDRATOR_ZLIB_NG_SRC:-}
[ -n "$SRC" ] || { echo "build-zlib-ng: set REHYDRATOR_ZLIB_NG_SRC to a zlib-ng git repository with tag $VERSION or to zlib-ng-$VERSION.tar.gz (no Debian package has the source)" >&2; exit 1; }
for t in gcc make; do
  command -v "$t" >/dev/null || { echo "build-zlib-ng: $t is missing (install build-essential)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/zlib-ng-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/src"
if [ -d "$SRC" ]; then
  got=$(git -C "$SRC" rev-parse "refs/tags/$VERSION^{commit}" 2>/dev/null) || { echo "build-zlib-ng: $SRC has no tag $VERSION" >&2; exit 1; }
  [ "$got" = "$COMMIT" ] || { echo "build-zlib-ng: tag $VERSION in $SRC is $got, want $COMMIT" >&2; exit 1; }
  git -C "$SRC" archive "$COMMIT" | tar -x -C "$WORK/src"
else
  got=$(sha256sum "$SRC" | cut -d' ' -f1)
  [ "$got" = "$TARBALL_SHA256" ] || { echo "build-zlib-ng: $SRC has sha256 $got, want $TARBALL_SHA256 (zlib-ng-$VERSION.tar.gz)" >&2; exit 1; }
  tar -xzf "$SRC" -C "$WORK/src" --strip-components=1
fi
cd "$WORK/src"
# Fedora builds with cmake and runtime CPU detection; the configure script builds the same
# sources (cmake is not on Debian's build machines here). The deflate strategies and the hash
# do not depend on the CPU: only compare256/longest_match and checksum speed-ups are dispatched,
# and they give the same matches.
CFLAGS="-O2 -g0" ./configure --zlib-compat --prefix="$PREFIX" >build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
make -j"$(nproc)" >>build.log 2>&1 || { tail -30 build.log >&2; exit 1; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO mkdir -p "$LIB"
# Only the shared library: programs pick it up through LD_LIBRARY_PATH; nothing links against it.
real=$(ls libz.so.1.*.zlib-ng)
$SUDO install -m 0755 "$real" "$LIB/"
$SUDO ln -sf "$real" "$LIB/libz.so.1"
echo "$VERSION $COMMIT" | $SUDO tee "$PREFIX/VERSION" >/dev/null
echo "zlib-ng $VERSION (compat, $real)" >&2
echo "$LIB"

#!/usr/bin/env bash
# File-aware matching for EROFS (fslist.EROFS, issue 12): on a ~135 MB /usr-like tree of many
# small files (python3.11's library, perl's modules, the first 60 MB of /usr/bin; the tree of
# tests/bench/erofs-lzma.sh), the any-order delta of the EROFS image (mkfs.erofs -zlzma,level=6
# -Efragments -C1048576, as the live rootfs; clusters expanded as the ISO route does) from an
# ext4 image of the same tree, against the delta from the file-mapped ext4 image.
#   tests/bench/erofs-filemap.sh [MKFS_ARGS...]
# Needs erofs-utils 1.8.6 (scripts/build-erofs-utils.sh) and mkfs.ext4 (e2fsprogs 1.43+, -d).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin:/sbin:/usr/sbin"
MKFS=${EROFS_UTILS_BIN:-/var/cache/rehydrator-tools/erofs-utils-1.8.6/bin}/mkfs.erofs
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(-zlzma,level=6 -Efragments -C1048576)
W=$(mktemp -d "${TMPDIR:-/tmp}/erofs-filemap-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/tree/bin"
cp -a /usr/lib/python3.11 /usr/share/perl "$W/tree/"
total=0
for f in $(find /usr/bin -maxdepth 1 -type f | sort); do
  s=$(stat -c %s "$f"); [ $((total + s)) -gt $((60 << 20)) ] && break
  cp -a "$f" "$W/tree/bin/"; total=$((total + s))
done
echo "tree: $(du -sb "$W/tree" | cut -f1) bytes, $(find "$W/tree" -type f | wc -l) files," \
  "$(find "$W/tree" -type f -size -4096c | wc -l) under 4 KiB"
"$MKFS" --quiet -T1700000000 -U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f "${ARGS[@]}" "$W/root.erofs" "$W/tree"
echo "mkfs.erofs ${ARGS[*]}: $(stat -c %s "$W/root.erofs") bytes"
mkfs.ext4 -q -F -E root_owner=0:0 -U 6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f -d "$W/tree" "$W/root.ext4" 400M
go run ./tests/bench/erofsmap -base "$W/root.ext4" -erofs "$W/root.erofs"

#!/usr/bin/env bash
# EROFS LZMA reproduction (package erofsprecomp, issue 12): for a ~135 MB /usr-like tree
# (python3.11's library: small .py and .pyc files; perl's modules; the first 60 MB of /usr/bin),
# the time of `mkfs.erofs -zlzma,level=6 -Efragments -C1048576` (single-threaded, as Fedora's
# live rootfs is made) against erofsprecomp's restore on 2 workers, the expanded size, the share
# of clusters reproduced and each step's peak RSS.
#   tests/bench/erofs-lzma.sh [MKFS_ARGS...]
# Needs erofs-utils 1.8.6 (scripts/build-erofs-utils.sh) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
MKFS=${EROFS_UTILS_BIN:-/var/cache/rehydrator-tools/erofs-utils-1.8.6/bin}/mkfs.erofs
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(-zlzma,level=6 -Efragments -C1048576)
W=$(mktemp -d "${TMPDIR:-/tmp}/erofs-lzma-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/tree/bin"
cp -a /usr/lib/python3.11 /usr/share/perl "$W/tree/"
total=0
for f in $(find /usr/bin -maxdepth 1 -type f | sort); do
  s=$(stat -c %s "$f"); [ $((total + s)) -gt $((60 << 20)) ] && break
  cp -a "$f" "$W/tree/bin/"; total=$((total + s))
done
echo "tree: $(du -sb "$W/tree" | cut -f1) bytes, $(find "$W/tree" -type f | wc -l) files"
go build -o "$W/erofslzma" ./tests/bench/erofslzma
rss() { awk -F': ' '/Maximum resident/ {printf "%.0f MiB", $2/1024}' "$1"; }
# Elapsed time and CPU time (user+sys): on a shared machine the CPU time is the steadier figure.
el() { awk -F': ' '/Elapsed/ {e=$2} /User time/ {u=$2} /System time/ {s=$2} END {printf "%s elapsed, %.1f s CPU", e, u+s}' "$1"; }
/usr/bin/time -v -o "$W/t.mkfs" "$MKFS" --quiet -T1700000000 -U6f1c1a7e-0bd4-4f0e-9d4c-5a6b7c8d9e0f "${ARGS[@]}" "$W/img" "$W/tree"
echo "mkfs.erofs ${ARGS[*]}: $(el "$W/t.mkfs"), peak RSS $(rss "$W/t.mkfs")"
/usr/bin/time -v -o "$W/t.exp" "$W/erofslzma" -mode expand -j 2 -in "$W/img" -out "$W/exp"
echo "  scan+expand: $(el "$W/t.exp"), peak RSS $(rss "$W/t.exp")"
/usr/bin/time -v -o "$W/t.res" "$W/erofslzma" -mode restore -j 2 -in "$W/exp" -out "$W/back"
echo "  restore: $(el "$W/t.res"), peak RSS $(rss "$W/t.res")"
cmp "$W/img" "$W/back" && echo "  restored image identical"

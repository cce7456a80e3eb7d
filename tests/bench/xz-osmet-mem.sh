#!/usr/bin/env bash
# Peak memory of compressing again an osmet file's xz -9 stream with lzmarepro.XZEncode
# (liblzma's single-threaded encoder, static, through cgo), issue 12: synthetic inputs of 5, 30
# and 100 MiB (zeros; a disk-like mix of zero, random, text and repeated 4 KiB blocks) and, when
# given, .xz files such as a release's metal.osmet stream (cut after its header).
#   tests/bench/xz-osmet-mem.sh [FILE.xz...]
# Needs GNU time. Each run prints the input, the output and VmHWM before/after encoding.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
W=$(mktemp -d "${TMPDIR:-/tmp}/xz-osmet-mem.XXXXXX")
trap 'rm -rf "$W"' EXIT
CGO_ENABLED=1 go build -o "$W/xzmem" ./tests/bench/xzmem
run() { /usr/bin/time -f "  peak RSS %M KiB, %e s wall, %U s user" "$W/xzmem" "$@"; }
for kind in zeros disk; do
  for size in 5 30 100; do
    echo "$kind $size MiB:"; run -size "$size" -kind "$kind"
  done
done
for f in "$@"; do
  echo "$f:"; run -in "$f"
done

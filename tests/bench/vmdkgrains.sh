#!/usr/bin/env bash
# vmdk-grains rehydrate speed (issue 11): rebuilding a zlib-ng VMDK (Fedora's qemu-img) from
# its guest view and reflate's per-grain data, beside `xz -dc X.vmdk.xz | sha256sum` of the
# shipped file (target: <= 1.5x).
#
#   tests/bench/vmdkgrains.sh [X.vmdk.xz] [ROUNDS]
# X defaults to the large fcos-44 release's aws VMDK (/var/tmp/lg/release44, read only) when
# present, else the small fcos-44 release made with zlib-ng
# (`go run ./tests/fixtures/mkrelease -profile fcos-44 -platforms aws -zlib ng`, kept in
# $WORK). The VMDK is decompressed into $WORK and split once (BenchmarkVMDKGrainsRehydrate's
# cache, $WORK/cache: minutes of CPU); then ROUNDS (default 3) alternating runs of each side
# print wall and CPU seconds (CPU: user+system of every process, both cores) and the ratios;
# the same image by vmdk-encode (C zlib's grains, which differ: the fast path when zlib made
# the image) is timed too, for reference.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
work="${WORK:-/var/tmp/vmdkgrains-bench}"
rounds="${2:-3}"
mkdir -p "$work/cache"
xzf="${1:-}"
if [ -z "$xzf" ]; then
  xzf="$(ls /var/tmp/lg/release44/*aws*.vmdk.xz 2>/dev/null | head -1 || true)"
fi
if [ -z "$xzf" ]; then
  if ! ls "$work"/rel/*aws*.vmdk.xz >/dev/null 2>&1; then
    go run ./tests/fixtures/mkrelease -profile fcos-44 -platforms aws -zlib ng -out "$work/rel" >&2
  fi
  xzf="$(ls "$work"/rel/*aws*.vmdk.xz | head -1)"
fi
vmdk="$work/$(basename "$xzf" .xz)"
[ -s "$vmdk" ] || xz -dc "$xzf" > "$vmdk"
go test -c -o "$work/dehydrate.test" ./dehydrate
echo "input: $xzf ($(stat -c %s "$xzf") bytes; VMDK $(stat -c %s "$vmdk") bytes)"
(cd dehydrate && REHYDRATOR_ZLIBNG_VMDK="$vmdk" REHYDRATOR_VMDKGRAINS_CACHE="$work/cache" \
  "$work/dehydrate.test" -test.run '^$' -test.bench VMDKGrainsRehydrate -test.benchtime 1x | grep -E 'split|^ok|FAIL' >&2)
for _ in $(seq "$rounds"); do
  /usr/bin/time -f "xz %e %U %S" sh -c "xz -dc '$xzf' | sha256sum >/dev/null" 2>&1
  (cd dehydrate && REHYDRATOR_ZLIBNG_VMDK="$vmdk" REHYDRATOR_VMDKGRAINS_CACHE="$work/cache" \
    "$work/dehydrate.test" -test.run '^$' -test.bench VMDKGrainsRehydrate -test.benchtime 1x) |
    awk '/^Benchmark/ { for (i = 3; i < NF; i++) v[$(i+1)] = $i; print "grains", v["grains-s"], v["cpu-s"]; print "encode", v["encode-s"], v["encode-cpu-s"] }'
done | awk '
  $1 == "xz" { xw += $2; xc += $3 + $4; nx++ }
  $1 == "grains" { gw += $2; gc += $3; ng++ }
  $1 == "encode" { ew += $2; ec += $3; ne++ }
  { print }
  END {
    printf "| side | wall (mean of %d) | CPU |\n|---|---:|---:|\n", nx
    printf "| xz -dc \\| sha256sum | %.2f s | %.2f s |\n", xw / nx, xc / nx
    printf "| vmdk-grains rehydrate | %.2f s | %.2f s |\n", gw / ng, gc / ng
    printf "| vmdk-encode (C zlib, other grain bytes; reference) | %.2f s | %.2f s |\n", ew / ne, ec / ne
    printf "vmdk-grains / xz: wall %.2fx, CPU %.2fx (target <= 1.5x); vmdk-grains / vmdk-encode: wall %.2fx, CPU %.2fx\n", (gw / ng) / (xw / nx), (gc / ng) / (xc / nx), (gw / ng) / (ew / ne), (gc / ng) / (ec / ne)
  }'

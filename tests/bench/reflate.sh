#!/usr/bin/env bash
# Deflate reconstruction (package reflate, issue 11).
#
#   tests/bench/reflate.sh [FILE,FILE...]
# per input and producer, the reconstruction data as a share of the compressed stream (target
# <= 0.5% for zlib, gzip, pigz, zip and Go's compress/flate; <= 3% for other producers) and the
# rebuild time; for gzip -9 also rebuild time over gzip -9's time to make the stream (target
# <= 1.5x). Inputs default to 4 MiB of /usr/include/linux (text) and 4 MiB of libc.so.6 +
# skopeo (binary). Needs python3 (system zlib), gzip, pigz, zip, busybox and libdeflate-tools; the
# zlib-ng producers (BenchmarkZlibNG) also need zlib-ng's compat library (scripts/build-zlib-ng.sh),
# else they are skipped.
#
#   tests/bench/reflate.sh big [ROUNDS]
# streaming in bounded memory: a plain file of ROUNDS (default 4) x (64 MiB of /usr/bin
# executables + 192 MiB of zeros), made into a .gz by gzip -9 (timed), split by SplitGzip and
# rebuilt by RebuildGzip, each in a process of its own under /usr/bin/time (wall, CPU, peak
# RSS). Files go to /var/tmp/reflate-big, deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"

if [ "${1:-}" = big ]; then
  rounds="${2:-4}"
  dir=/var/tmp/reflate-big
  rm -rf "$dir"; mkdir -p "$dir"
  trap 'rm -rf "$dir"' EXIT
  find /usr/bin -type f -size +100k | sort | xargs cat 2>/dev/null | head -c $((64 << 20)) > "$dir/bin" || true
  for _ in $(seq "$rounds"); do cat "$dir/bin"; head -c $((192 << 20)) /dev/zero; done > "$dir/plain.in"
  rm "$dir/bin"
  echo "plain: $(stat -c %s "$dir/plain.in") bytes"
  /usr/bin/time -f "gzip -9: %e s wall, %U s user, %M KiB peak RSS" gzip -9 -n -c "$dir/plain.in" > "$dir/big.gz"
  echo "gz: $(stat -c %s "$dir/big.gz") bytes"
  rm "$dir/plain.in"
  go test -c -o "$dir/reflate.test" ./reflate
  for step in split rebuild; do
    REFLATE_BIG="$dir/big.gz" /usr/bin/time -f "$step: %e s wall, %U s user, %M KiB peak RSS" \
      "$dir/reflate.test" -test.run '^$' -test.bench "BigStream/$step\$" -test.benchtime 1x -test.timeout 3h | grep -E '^Benchmark|^(ok|PASS|FAIL)'
  done
  exit 0
fi

[ -n "${1:-}" ] && export REFLATE_BENCH_INPUT="$1"
go test -run '^$' -bench 'Producers|ZlibNG' -benchtime 1x -timeout 60m ./reflate | awk '
  /^Benchmark(Producers|ZlibNG)\// {
    split($1, n, "/"); sub(/-[0-9]+$/, "", n[3])
    x = ""; for (i = 3; i < NF; i += 2) v[$(i+1)] = $i
    if ("x-gzip9" in v) x = sprintf("%.2fx", v["x-gzip9"])
    printf "| %-7s | %-15s | %8.4f%% | %9d | %8.0f ms | %s |\n", n[2], n[3], v["recon-%"], v["recon-bytes"], $3/1e6, x
    delete v
    next
  }
  /^(ok|FAIL|PASS)/ { print }
' | { echo "| input   | producer        | recon/comp | recon bytes | rebuild   | vs gzip -9 |"; echo "|---|---|---:|---:|---:|---:|"; cat; }

#!/usr/bin/env bash
# Deflate reconstruction (package reflate, issue 11): per input and producer, the reconstruction
# data as a share of the compressed stream (target <= 0.5% for zlib, gzip, pigz, zip and Go's
# compress/flate; <= 3% for other producers) and the rebuild time; for gzip -9 also rebuild time
# over gzip -9's time to make the stream (target <= 1.5x).
#   tests/bench/reflate.sh [FILE,FILE...]
# Inputs default to 4 MiB of /usr/include/linux (text) and 4 MiB of libc.so.6 + skopeo (binary).
# Needs python3 (system zlib), gzip, pigz, zip, busybox and libdeflate-tools; the zlib-ng
# producers (BenchmarkZlibNG) also need zlib-ng's compat library (scripts/build-zlib-ng.sh),
# else they are skipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
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

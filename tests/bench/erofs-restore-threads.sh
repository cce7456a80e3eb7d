#!/usr/bin/env bash
# Does erofs-restore use both cores? On a loaded machine elapsed times cannot tell, so this
# samples the CPU time of each thread of erofsprecomp's Restore (tests/bench/erofslzma) while it
# runs: each LZMA encoder works in cgo on its own OS thread, so with -j 2 two threads should
# share the encoding about evenly. Also prints wall, CPU and peak RSS of -j 1 and -j 2.
#   tests/bench/erofs-restore-threads.sh ROOT_EROFS
# ROOT_EROFS: an EROFS image with LZMA clusters, e.g. root.erofs out of the fcos-44 PXE rootfs
# (`cpio -i root.erofs < *-live-rootfs.x86_64.img`). Needs GNU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
IMG=$(realpath "${1:?usage: $0 ROOT_EROFS}")
W=$(mktemp -d "${TMPDIR:-/tmp}/erofs-threads.XXXXXX")
trap 'rm -rf "$W"' EXIT
go build -o "$W/erofslzma" ./tests/bench/erofslzma
"$W/erofslzma" -mode expand -j 2 -in "$IMG" -out "$W/exp"
for j in 1 2; do
  /usr/bin/time -v -o "$W/t" "$W/erofslzma" -mode restore -j $j -in "$W/exp" -out "$W/back" >/dev/null
  cmp "$W/back" "$IMG"
  awk -F': ' -v j=$j '/Elapsed/ {n=split($2,p,":"); e=0; for(i=1;i<=n;i++) e=e*60+p[i]}
    /User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {m=$2}
    END {printf "restore -j %d: %.1f s wall, %.1f s CPU, CPU/wall %.2f, peak RSS %.0f MiB, identical\n", j, e, u+s, (u+s)/e, m/1024}' "$W/t"
done
"$W/erofslzma" -mode restore -j 2 -in "$W/exp" -out "$W/back" >/dev/null &
pid=$!
last=""
while kill -0 $pid 2>/dev/null; do
  s=$(for t in /proc/$pid/task/*/stat; do awk '{print $1, ($14+$15)/100}' "$t" 2>/dev/null; done || true)
  [ -n "$s" ] && last=$s
  sleep 0.5
done
wait $pid
echo "restore -j 2, CPU seconds of its busiest threads (last sample):"
echo "$last" | sort -k2 -nr | head -4

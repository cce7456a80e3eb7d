#!/usr/bin/env bash
# Compare package delta with rdiff (librsync 2.3) on one BASE/TARGET pair: delta sizes and seconds
# side by side. Our delta is checked by applying it with the real `rdiff patch` (and delta.Patch).
#
#   tests/bench/delta-vs-rdiff.sh BASE TARGET
#
# Environment: RDIFF_BLOCK=N adds `-b N` to `rdiff signature` (default: rdiff's own choice);
# DELTA_BS=N sets delta.Options.BlockSize; KEEP=DIR keeps the deltas in DIR; LIBRSYNC_GO=1 adds
# a row for balena-os/librsync-go v0.9.0 (BLAKE2 signature at 2 KiB blocks + Delta), the engine
# package delta replaced.
# Seconds are wall clock and CPU (user+sys); on a loaded machine compare the CPU column.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: $0 BASE TARGET" >&2
	exit 2
fi
base=$1 target=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=${KEEP:-$tmp}
mkdir -p "$out"

command -v rdiff >/dev/null || { echo "rdiff not found (apt-get install rdiff)" >&2; exit 1; }
(cd "$root" && go build -o "$tmp/deltabench" ./delta/internal/deltabench)

# timed FILE CMD...: runs CMD, appends "wall user+sys" seconds to FILE.
timed() {
	local f=$1
	shift
	local TIMEFORMAT='%R %U %S'
	{ time "$@" >>"$tmp/stdout"; } 2>>"$tmp/times.raw"
	tail -1 "$tmp/times.raw" | awk '{ printf "%.2f %.2f\n", $1, $2 + $3 }' >"$f"
}
size() { stat -c %s "$1"; }

# Read both files once so that every run below starts from the page cache.
cat "$base" "$target" >/dev/null

sigargs=(-R rollsum)
[ -n "${RDIFF_BLOCK:-}" ] && sigargs+=(-b "$RDIFF_BLOCK")

timed "$tmp/t.sig" rdiff "${sigargs[@]}" signature "$base" "$tmp/sig"
timed "$tmp/t.delta" rdiff delta "$tmp/sig" "$target" "$out/rdiff.delta"
timed "$tmp/t.ours" "$tmp/deltabench" -bs "${DELTA_BS:-0}" -o "$out/ours.delta" "$base" "$target"
rdiff patch "$base" "$out/ours.delta" "$tmp/patched"
cmp -s "$tmp/patched" "$target" || { echo "FAIL: rdiff patch of our delta differs from TARGET" >&2; exit 1; }
"$tmp/deltabench" -verify -bs "${DELTA_BS:-0}" "$base" "$target" | grep -q "matches the target" ||
	{ echo "FAIL: delta.Patch of our delta differs from TARGET" >&2; exit 1; }

read -r sw sc <"$tmp/t.sig"
read -r dw dc <"$tmp/t.delta"
read -r ow oc <"$tmp/t.ours"
printf 'base   %s (%s bytes)\ntarget %s (%s bytes)\n' "$base" "$(size "$base")" "$target" "$(size "$target")"
printf '%-28s %12s %8s %8s\n' "engine" "delta bytes" "wall s" "cpu s"
printf '%-28s %12s %8.2f %8.2f  (signature %.2f + delta %.2f wall; signature %s bytes)\n' \
	"rdiff ${sigargs[*]}" "$(size "$out/rdiff.delta")" "$(echo "$sw + $dw" | bc)" "$(echo "$sc + $dc" | bc)" \
	"$sw" "$dw" "$(size "$tmp/sig")"
printf '%-28s %12s %8.2f %8.2f  (%s)\n' "delta.Compute" "$(size "$out/ours.delta")" "$ow" "$oc" \
	"$(grep '^compute:' "$tmp/stdout" | head -1 | sed 's/^compute: //')"
if [ -n "${LIBRSYNC_GO:-}" ]; then
	timed "$tmp/t.lrs" "$tmp/deltabench" -librsync-go -o "$out/librsync-go.delta" "$base" "$target"
	read -r lw lc <"$tmp/t.lrs"
	printf '%-28s %12s %8.2f %8.2f  (%s)\n' "librsync-go v0.9.0 -b 2048" "$(size "$out/librsync-go.delta")" \
		"$lw" "$lc" "$(grep '^librsync-go:' "$tmp/stdout" | sed 's/^librsync-go: //')"
fi
echo "our delta applied by rdiff patch and by delta.Patch: identical to TARGET"

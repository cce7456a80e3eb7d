#!/usr/bin/env bash
# The fcos-44 release as the merged tool stores it: one build, the per-artifact table (route,
# size, cost in the image, % of size, % of the shipped file), the whole image against the
# shipped files, and rehydration side by side with `xz -dc | sha256sum` of the shipped file.
# Prints Markdown for BENCHMARKS.md on stdout; progress on stderr.
#
#   tests/bench/fcos44.sh RELEASE_DIR
#
# RELEASE_DIR: a release of `go run ./tests/fixtures/mkrelease -profile fcos-44 ...` (small or
# large; e.g. -size large -platforms all,live -zlib ng -xz-level 1). Fedora ships xz -9: when
# the release was made with a faster level, the script also compresses the qemu qcow2 at -9
# once and gives the whole-image ratio against the shipped files' size at -9, estimated from that
# one file's -9/-N ratio (every xz artifact is the same disk with small edits).
# BENCH_DIR (default /var/tmp/rehydrator-bench44) holds the image and temporary files.
# REHYDRATE="aws openstack ..." picks the disks timed (default: a few of each route), ISO_RUNS
# which of "iso pxe iso_pxe" are timed (default all three), BUILD_FLAGS more flags for build
# (e.g. --level 3), XZ9=no skips the xz -9 estimate, EXCLUDE="aws,vmware" platforms left out (a copy of stream.json without them
# and links to the other files, under BENCH_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
rel=${1:?usage: tests/bench/fcos44.sh RELEASE_DIR}
rel=$(cd "$rel" && pwd)
[ -f "$rel/stream.json" ] || { echo "fcos44.sh: $rel/stream.json is missing (make the release with tests/fixtures/mkrelease -profile fcos-44)" >&2; exit 2; }
B=${BENCH_DIR:-/var/tmp/rehydrator-bench44}
mkdir -p "$B"
if [ -n "${EXCLUDE:-}" ]; then
  rm -rf "$B/release"
  python3 - "$rel" "$B/release" "$EXCLUDE" <<'EOF'
import json, os, sys
src, dst, excl = sys.argv[1], sys.argv[2], set(sys.argv[3].split(","))
os.makedirs(dst)
s = json.load(open(os.path.join(src, "stream.json")))
for a in s["architectures"].values():
    for p in [p for p in a["artifacts"] if p in excl]:
        del a["artifacts"][p]
    for art in a["artifacts"].values():
        for f in art["formats"].values():
            for item in f.values():
                n = os.path.basename(item["location"])
                if not os.path.exists(os.path.join(dst, n)):
                    os.symlink(os.path.join(src, n), os.path.join(dst, n))
json.dump(s, open(os.path.join(dst, "stream.json"), "w"), indent=2)
EOF
  rel="$B/release"
fi
for t in /usr/bin/time xz python3 sha256sum; do
  command -v "$t" >/dev/null || { echo "fcos44.sh: $t is missing" >&2; exit 2; }
done
CGO_ENABLED=1 go build -trimpath -tags netgo,osusergo -ldflags="-s -w -linkmode external -extldflags -static" -o "$B/rehydrator" ./cmd/rehydrator
R="$B/rehydrator"
img="$B/image"
rm -rf "$img" "$B/out" "$B/work"
mkdir -p "$B/out"
: > "$B/times"
timed() { # timed NAME CMD...: appends "NAME seconds maxrss_kib" to $B/times
  local name=$1; shift
  /usr/bin/time -o "$B/t.$$" -f "%e %M" "$@"
  echo "$name $(cat "$B/t.$$")" >> "$B/times"
}

echo "== build" >&2
# shellcheck disable=SC2086
timed build "$R" build "$rel" --output "oci:$img:bench" --report "$B/report.json" -q --workdir "$B/work" ${BUILD_FLAGS:-} >/dev/null
rm -rf "$B/work"

# The -9 size of the qemu qcow2 (once per release), when the release ships another level.
q=$(ls "$rel"/*-qemu.x86_64.qcow2.xz 2>/dev/null | head -1 || true)
if [ -n "$q" ] && [ "${XZ9:-yes}" != no ] && [ ! -s "$B/xz9.$(basename "$q").size" ]; then
  echo "== xz -9 of $(basename "$q") for the shipped-size estimate" >&2
  xz -dc "$q" | xz -9 -T2 -c | wc -c > "$B/xz9.$(basename "$q").size"
fi

# Rehydration, side by side with decompressing and hashing the shipped file.
picks=${REHYDRATE:-"openstack metal4k aws vmware nutanix gcp hyperv applehv kubevirt azure"}
for p in $picks; do
  f=$(ls "$rel"/*-"$p".x86_64.* 2>/dev/null | grep -v '\.sig$' | head -1 || true)
  [ -n "$f" ] || continue
  echo "== rehydrate $p" >&2
  case "$f" in
    *.xz) timed "ref_$p" sh -c "xz -dc '$f' | sha256sum >/dev/null" ;;
    *.gz) timed "ref_$p" sh -c "gzip -dc '$f' | sha256sum >/dev/null" ;;
    *.zip) timed "ref_$p" sh -c "unzip -p '$f' | sha256sum >/dev/null" ;;
    *) timed "ref_$p" sh -c "sha256sum '$f' >/dev/null" ;;
  esac
  timed "rehydrate_$p" "$R" rehydrate "$B/out" --disk "$p" --image "oci:$img:bench" --no-progress
  rm -rf "$B/out"/*
done
if ls "$rel"/*live-iso* >/dev/null 2>&1; then
  f=$(ls "$rel"/*live-iso*.iso | head -1)
  echo "== rehydrate the ISO and the PXE files" >&2
  timed ref_iso sh -c "sha256sum '$f' >/dev/null"
  for run in ${ISO_RUNS:-iso pxe iso_pxe}; do
    case $run in
      iso) flags=(--iso) ;;
      pxe) flags=(--pxe) ;;
      iso_pxe) flags=(--iso --pxe) ;;
      *) echo "fcos44.sh: ISO_RUNS: unknown run $run (want iso, pxe, iso_pxe)" >&2; exit 2 ;;
    esac
    timed "rehydrate_$run" "$R" rehydrate "$B/out" "${flags[@]}" --image "oci:$img:bench" --no-progress
    rm -rf "$B/out"/*
  done
fi

python3 - "$rel" "$B" <<'EOF'
import json, os, sys, glob
rel, B = sys.argv[1], sys.argv[2]
rep = json.load(open(os.path.join(B, "report.json")))
shipped = {}
for p in os.listdir(rel):
    if p.endswith(".sig") or p == "stream.json":
        continue
    shipped[p] = os.path.getsize(os.path.join(rel, p))
def shipped_of(name):
    for ext in ("", ".xz", ".gz", ".zip"):
        if name + ext in shipped:
            return name + ext
    return None
xz9 = glob.glob(os.path.join(B, "xz9.*.size"))
ratio9 = None
for f in xz9:
    src = os.path.basename(f)[len("xz9."):-len(".size")]
    if src in shipped:
        ratio9 = int(open(f).read()) / shipped[src]
tot_ship = tot_ship9 = tot_cost = tot_size = 0
print("| artifact | route | size | shipped file | cost in the image | % of size | % of shipped |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for a in rep["artifacts"]:
    cost = a["layerBytes"] + a["recipeBytes"]
    s = shipped_of(a["name"])
    sb = shipped.get(s, 0)
    sb9 = sb * ratio9 if (ratio9 and s and s.endswith(".xz")) else sb
    tot_ship += sb; tot_ship9 += sb9; tot_cost += cost; tot_size += a["size"]
    print(f"| {a['name']} | {a['method']} | {a['size']:,} | {sb:,} | {cost:,} | {100*cost/a['size']:.3f}% | {100*cost/sb if sb else 0:.2f}% |")
img = rep["imageBytes"]
print()
print(f"Whole image {img:,} bytes (tool {rep['toolBytes']:,}, metadata {rep['metadataBytes']:,}); "
      f"artifacts' uncompressed size {tot_size:,}; shipped files {tot_ship:,}: "
      f"the image is {100*img/tot_ship:.1f}% of the shipped files.")
if ratio9:
    print(f"With the xz artifacts at xz -9 (estimated from the qemu qcow2's -9/shipped ratio {ratio9:.3f}): "
          f"shipped files ~{tot_ship9:,.0f}, the image ~{100*img/tot_ship9:.1f}% of them.")
print()
times = {}
for line in open(os.path.join(B, "times")):
    n, s, k = line.split()
    times[n] = (float(s), int(k))
print("| step | seconds | peak RSS MiB | reference | ref seconds | ratio |")
print("| --- | ---: | ---: | --- | ---: | ---: |")
for n, (s, k) in times.items():
    if n.startswith("ref_"):
        continue
    ref = "ref_" + n[len("rehydrate_"):] if n.startswith("rehydrate_") else None
    if n in ("rehydrate_pxe", "rehydrate_iso_pxe"):
        ref = "ref_iso"
    if ref in times:
        rs = times[ref][0]
        what = "sha256sum of the shipped file" if ref == "ref_iso" else "decompress+sha256sum of the shipped file"
        print(f"| {n} | {s:.1f} | {k/1024:.0f} | {what} | {rs:.1f} | {s/rs if rs else 0:.2f}x |")
    else:
        print(f"| {n} | {s:.1f} | {k/1024:.0f} | | | |")
EOF

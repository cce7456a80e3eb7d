#!/usr/bin/env bash
# Side-by-side benchmarks of rehydrator on one release, in one run (the machine is shared and
# noisy: read the ratios, not the seconds). Prints a Markdown report for BENCHMARKS.md.
#
#   tests/bench/run.sh [RELEASE_DIR]
#
# Without RELEASE_DIR it makes the large fixture release (>= 2 GiB virtual, >= 1 GiB of data)
# under $BENCH_DIR (default /var/tmp/rehydrator-bench). Needs rdiff, xz, GNU time, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
B=${BENCH_DIR:-/var/tmp/rehydrator-bench}
mkdir -p "$B"
rel=${1:-$B/release}
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
if [ ! -f "$rel/stream.json" ]; then
  echo "making the large release in $rel" >&2
  go run ./tests/fixtures/mkrelease -size large -out "$rel" >&2
fi
CGO_ENABLED=1 go build -trimpath -tags netgo,osusergo -ldflags="-s -w -linkmode external -extldflags -static" -o "$B/rehydrator" ./cmd/rehydrator
R="$B/rehydrator"
img="$B/image"
rm -rf "$img" "$B/out" "$B/files"
mkdir -p "$B/out" "$B/files"

timed() { # timed NAME CMD... : runs CMD, appends "NAME seconds maxrss_kib" to $B/times
  local name=$1; shift
  /usr/bin/time -o "$B/t.$$" -f "%e %M" "$@"
  echo "$name $(cat "$B/t.$$")" >> "$B/times"
}
: > "$B/times"

py() { python3 - "$@"; }

# Shipped files and their uncompressed twins (for rdiff and sha256sum).
q_xz=$(ls "$rel"/*-qemu.x86_64.qcow2.xz)
o_xz=$(ls "$rel"/*-openstack.x86_64.qcow2.xz)
xz -dc "$q_xz" > "$B/files/qemu.qcow2"
xz -dc "$o_xz" > "$B/files/openstack.qcow2"
sync
# The fixture may ship a fast xz level; Fedora ships xz -9 (coreos-assembler: xz -c9 -T<n>), which
# is what the image must not exceed.
[ -f "$B/qemu.qcow2.xz9.size" ] || xz -9 -T2 -c "$B/files/qemu.qcow2" | wc -c > "$B/qemu.qcow2.xz9.size"

echo "== build" >&2
timed build "$R" build "$rel" --output "oci:$img:bench" --report "$B/report.json" -q --workdir "$B/work" >/dev/null
rm -rf "$B/work"

echo "== rdiff on qemu.qcow2 -> openstack.qcow2" >&2
timed rdiff_sig rdiff -R rollsum signature "$B/files/qemu.qcow2" "$B/sig"
timed rdiff_delta rdiff delta "$B/sig" "$B/files/openstack.qcow2" "$B/rdiff.delta"
rdiff_size=$(stat -c %s "$B/rdiff.delta")

echo "== rehydrate openstack.qcow2 vs xz -dc | sha256sum vs sha256sum" >&2
for i in 1 2; do
  timed "xz_sha$i" sh -c "xz -dc '$o_xz' | sha256sum >/dev/null"
  timed "sha$i" sha256sum "$B/files/openstack.qcow2"
  timed "rehydrate$i" "$R" rehydrate "$B/out" --disk openstack --image "oci:$img:bench" --no-progress
  rm -f "$B/out"/*
done
timed rehydrate_metal "$R" rehydrate "$B/out" --disk metal --image "oci:$img:bench" --no-progress --tmpdir "$B"
rm -f "$B/out"/*

echo "== peak RSS of each route (issue 9: 256 MiB budget), to a directory and to stdout" >&2
for d in qemu metal openstack; do
  timed "route_${d}_dir" "$R" rehydrate "$B/out" --disk "$d" --image "oci:$img:bench" --no-progress --tmpdir "$B"
  rm -f "$B/out"/*
  timed "route_${d}_stdout" sh -c "'$R' rehydrate - --disk $d --image 'oci:$img:bench' --no-progress --tmpdir '$B' > /dev/null"
done
if ls "$rel"/*-live.x86_64.iso >/dev/null 2>&1; then
  echo "== rehydrate the live ISO, and the ISO with the PXE set" >&2
  timed rehydrate_iso "$R" rehydrate "$B/out" --iso --image "oci:$img:bench" --no-progress --tmpdir "$B"
  rm -f "$B/out"/*
  timed rehydrate_isopxe "$R" rehydrate "$B/out" --iso --pxe --image "oci:$img:bench" --no-progress --tmpdir "$B"
  rm -f "$B/out"/*
  timed sha_iso sha256sum "$rel"/*-live.x86_64.iso
fi

echo "== rdiff on the baseline's guest view -> metal.raw" >&2
qemu-img convert -O raw "$B/files/qemu.qcow2" "$B/files/qemu.raw"
xz -dc "$rel"/*-metal.x86_64.raw.xz > "$B/files/metal.raw"
timed rdiff_sig_raw rdiff -R rollsum signature "$B/files/qemu.raw" "$B/sig.raw"
timed rdiff_delta_raw rdiff delta "$B/sig.raw" "$B/files/metal.raw" "$B/rdiff-raw.delta"
rm -f "$B/files/qemu.raw" "$B/files/metal.raw" "$B/sig.raw"

py "$B" "$q_xz" "$rdiff_size" "$(cat "$B/qemu.qcow2.xz9.size")" <<'EOF'
import json, os, sys
B, q_xz, rdiff_size, q_xz9 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
times = {}
for line in open(os.path.join(B, "times")):
    name, secs, rss = line.split()
    times[name] = (float(secs), int(rss))
rep = json.load(open(os.path.join(B, "report.json")))
MiB = 1 << 20
def best(prefix):
    vals = [v for k, v in times.items() if k.startswith(prefix) and k[len(prefix):].isdigit()]
    return min(v[0] for v in vals), max(v[1] for v in vals)
print("### Image size")
print()
print("| artifact | method | size | stored (raw) | in image (compressed) |")
print("| --- | --- | ---: | ---: | ---: |")
for a in rep["artifacts"]:
    print(f"| {a['name']} | {a['method']} | {a['size']/MiB:.1f} MiB | {a['storedBytes']/1024:.1f} KiB | {a['layerBytes']/1024:.1f} KiB |")
shipped_q = os.path.getsize(q_xz)
shipped_all = sum(os.path.getsize(os.path.join(os.path.dirname(q_xz), f)) for f in os.listdir(os.path.dirname(q_xz)) if f != "stream.json")
print()
print(f"- whole image: {rep['imageBytes']/MiB:.1f} MiB (tool layer {rep['toolBytes']/MiB:.1f} MiB, metadata {rep['metadataBytes']/1024:.1f} KiB)")
print(f"- qemu.qcow2.xz alone as Fedora ships it (xz -9): {q_xz9/MiB:.1f} MiB; image / qemu.qcow2.xz = {rep['imageBytes']/q_xz9:.3f}")
print(f"- (the fixture's own qemu.qcow2.xz, at its faster xz level: {shipped_q/MiB:.1f} MiB)")
print(f"- all shipped files: {shipped_all/MiB:.1f} MiB; image / all shipped = {rep['imageBytes']/shipped_all:.3f}")
print()
print("### Delta work (build) vs rdiff, qemu.qcow2 -> openstack.qcow2")
print()
op = [a for a in rep["artifacts"] if "openstack" in a["name"]][0]
rd = times["rdiff_sig"][0] + times["rdiff_delta"][0]
print(f"- rehydrator delta: {op['storedBytes']} bytes in {op['deltaSeconds']:.2f} s; rdiff signature+delta: {rdiff_size} bytes in {rd:.2f} s; time ratio {op['deltaSeconds']/rd:.2f}")
print(f"- all deltas of the build: {rep['deltaSeconds']:.2f} s; whole build {times['build'][0]:.1f} s, peak RSS {times['build'][1]/1024:.0f} MiB")
mt = [a for a in rep["artifacts"] if a["name"].endswith("-metal.x86_64.raw")][0]
rdr = times["rdiff_sig_raw"][0] + times["rdiff_delta_raw"][0]
print(f"- baseline guest view -> metal.raw: rehydrator {mt['storedBytes']} bytes in {mt['deltaSeconds']:.2f} s; rdiff signature+delta {rdr:.2f} s; time ratio {mt['deltaSeconds']/rdr:.2f}")
print()
print("| artifact | method | delta seconds |")
print("| --- | --- | ---: |")
for a in rep["artifacts"]:
    if a["deltaSeconds"] > 0:
        print(f"| {a['name']} | {a['method']} | {a['deltaSeconds']:.2f} |")
print()
print("### Rehydrating openstack.qcow2 from the OCI layout (best of 2)")
print()
r, rrss = best("rehydrate"); x, _ = best("xz_sha"); s, _ = best("sha")
print(f"| command | seconds | ratio |")
print(f"| --- | ---: | ---: |")
print(f"| rehydrator rehydrate --disk openstack | {r:.2f} | 1 |")
print(f"| xz -dc openstack.qcow2.xz \\| sha256sum | {x:.2f} | {x/r:.2f}x slower |")
print(f"| sha256sum openstack.qcow2 | {s:.2f} | rehydrate takes {r/s:.2f}x |")
print()
print(f"- peak RSS: rehydrate openstack {rrss/1024:.0f} MiB, rehydrate metal {times['rehydrate_metal'][1]/1024:.0f} MiB ({times['rehydrate_metal'][0]:.1f} s), build {times['build'][1]/1024:.0f} MiB")
print()
print("### Peak RSS of each rehydrate route (GNU time %M; budget 256 MiB)")
print()
print("| --disk | method | to a directory | to stdout |")
print("| --- | --- | ---: | ---: |")
def rss(name):
    m = times[name][1] / 1024
    return f"{m:.0f} MiB" + (" **over budget**" if m > 256 else "")
for d in ("qemu", "metal", "openstack"):
    a = [x for x in rep["artifacts"] if f"-{d}." in x["name"]]
    method = a[0]["method"] if a else ""
    print(f"| {d} | {method} | {rss(f'route_{d}_dir')} | {rss(f'route_{d}_stdout')} |")
iso = [a for a in rep["artifacts"] if a["name"].endswith(".iso")]
if iso and "rehydrate_iso" in times:
    a = iso[0]
    print()
    print("### The live ISO")
    print()
    print(f"- {a['name']}: {a['method']}, {a['size']/MiB:.1f} MiB; {a['layerBytes']/MiB:.2f} MiB in the image = {a['layerBytes']/a['size']:.1%} of its size")
    print(f"- PXE files: {sum(x['layerBytes'] for x in rep['artifacts'] if '-live-' in x['name'])} bytes in the image")
    print(f"- rehydrate --iso {times['rehydrate_iso'][0]:.1f} s ({times['rehydrate_iso'][1]/1024:.0f} MiB RSS); --iso --pxe {times['rehydrate_isopxe'][0]:.1f} s; sha256sum of the ISO {times['sha_iso'][0]:.1f} s")
EOF

#!/usr/bin/env bash
# What each disk format costs in the image, against issue 3's targets: the aws VMDK and the
# vmware OVA <= 2% of their uncompressed size, azure, gcp and digitalocean <= 1 MiB each.
#   tests/bench/formats.sh RELEASE_DIR
# RELEASE_DIR is made with `go run ./tests/fixtures/mkrelease ... -platforms all`. Builds the
# static cgo binary, dehydrates the release into an OCI layout under $BENCH_DIR (default
# /var/tmp/rehydrator-bench-formats) with --report, and prints one line per format. "cost" is the
# compressed layer bytes of the artifact's deltas plus its step parameters in the recipe
# (counted uncompressed, an upper bound: the metadata layer is compressed).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
rel=${1:?usage: tests/bench/formats.sh RELEASE_DIR}
B=${BENCH_DIR:-/var/tmp/rehydrator-bench-formats}
rm -rf "$B" && mkdir -p "$B"
CGO_ENABLED=1 go build -trimpath -tags osusergo,netgo -ldflags="-s -w -linkmode external -extldflags -static" -o "$B/rehydrator" ./cmd/rehydrator
/usr/bin/time -f "build: %e s wall, %M KiB max RSS" "$B/rehydrator" build "$rel" --output "oci:$B/layout:bench" --report "$B/report.json" -q >/dev/null
for d in aws vmware azure gcp digitalocean; do
  rm -rf "$B/out" && mkdir -p "$B/out"
  /usr/bin/time -f "rehydrate --disk $d: %e s wall, %U s user, %M KiB max RSS" "$B/rehydrator" rehydrate "$B/out" --disk "$d" --no-progress --image "oci:$B/layout:bench"
  # Side by side: what a user of the shipped file does to get and check the same bytes.
  f=$(ls "$rel"/*-"$d".*)
  case "$f" in
    *.xz) dec="xz -dc" ;;
    *.gz) dec="gzip -dc" ;;
    *) dec="cat" ;;
  esac
  /usr/bin/time -f "  $dec $(basename "$f") | sha256sum: %e s wall" bash -c "$dec '$f' | sha256sum >/dev/null"
done
python3 - "$B/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
targets = {"aws": ("vmdk", 0.02), "vmware": ("ova", 0.02), "azure": ("vhd", 1 << 20), "gcp": ("tar", 1 << 20), "digitalocean": ("qcow2", 1 << 20)}
print(f"{'platform':13} {'method':42} {'size':>12} {'layers':>8} {'recipe':>8} {'cost':>8} {'target':>10}  ok")
for a in r["artifacts"]:
    for p, (ext, t) in targets.items():
        if f"-{p}." in a["name"] and a["name"].endswith(ext):
            cost = a["layerBytes"] + a["recipeBytes"]
            limit = t * a["size"] if t < 1 else t
            print(f"{p:13} {a['method']:42} {a['size']:12d} {a['layerBytes']:8d} {a['recipeBytes']:8d} {cost:8d} {int(limit):10d}  {'yes' if cost <= limit else 'NO'}"
                  f"  ({100*cost/a['size']:.3f}% of the file)")
print(f"whole image {r['imageBytes']} bytes; tool layer {r['toolBytes']}; metadata layer {r['metadataBytes']}")
PY

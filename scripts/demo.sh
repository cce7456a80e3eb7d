#!/usr/bin/env bash
# Quick start: installs the tools, builds rehydrator, makes a small Fedora-CoreOS-like release,
# dehydrates it into one OCI image and rehydrates the openstack disk from it, bit for bit.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
scripts/setup-debian.sh
out=${DEMO_DIR:-_out/demo}
mkdir -p "$out"
echo "== building rehydrator" >&2
# Static, with cgo: vmdk-encode deflates with zlib (linked in from zlib1g-dev), see vmdk/doc.go.
CGO_ENABLED=1 go build -trimpath -tags osusergo,netgo -ldflags="-s -w -linkmode external -extldflags -static" -o bin/rehydrator ./cmd/rehydrator
echo "== making a small release in $out/release" >&2
go run ./tests/fixtures/mkrelease -size small -out "$out/release"
echo "== dehydrating it into oci:$out/fcos-images:stable" >&2
bin/rehydrator build "$out/release" --output "oci:$out/fcos-images:stable"
bin/rehydrator list --image "oci:$out/fcos-images:stable"
echo "== rehydrating the openstack disk" >&2
bin/rehydrator rehydrate "$out" --disk openstack --image "oci:$out/fcos-images:stable"
f=$(ls "$out"/*-openstack.*.qcow2)
got=$(sha256sum "$f" | cut -d' ' -f1)
echo "rehydrated: $got  $f" >&2
if bin/rehydrator print-stream-json --image "oci:$out/fcos-images:stable" | grep -q "\"uncompressed-sha256\": *\"$got\""; then
  echo "OK: equals the uncompressed-sha256 in the stream metadata, bit for bit" >&2
else
  echo "FAIL: not the uncompressed-sha256 of the stream metadata" >&2; exit 1
fi
du -sh "$out/release" "$out/fcos-images" >&2

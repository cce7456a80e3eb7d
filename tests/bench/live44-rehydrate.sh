#!/usr/bin/env bash
# Rehydrating the fcos-44 live ISO and PXE set (issue 12's targets): wall time, CPU time and
# peak RSS of `rehydrate --iso`, `--pxe` and `--iso --pxe`, side by side with mkfs.erofs making
# the same rootfs again (root.erofs taken out of the rehydrated PXE rootfs, its tree extracted
# with fsck.erofs, made with the fixture's options: LZMA level 6, fragments, 1 MiB clusters).
#   tests/bench/live44-rehydrate.sh RELEASE_DIR [IMAGE_REF]
# RELEASE_DIR: go run ./tests/fixtures/mkrelease -profile fcos-44 -platforms qemu,metal,live -out DIR
# IMAGE_REF: an image built from it; default: built here (OCI layout, --level 1).
# Every rehydrated file is compared with the release's. Needs erofs-utils 1.8.6
# (scripts/build-erofs-utils.sh), cpio and GNU time. On a shared machine the CPU time is the
# steadier figure; CPU/wall above 1 shows both cores at work.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
REL=$(realpath "${1:?usage: $0 RELEASE_DIR [IMAGE_REF]}")
BIN=${EROFS_UTILS_BIN:-/var/cache/rehydrator-tools/erofs-utils-1.8.6/bin}
W=$(mktemp -d "${TMPDIR:-/tmp}/live44-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
go build -o "$W/rh" ./cmd/rehydrator
IMG=${2:-}
if [ -z "$IMG" ]; then
  IMG="oci:$W/layout:44"
  /usr/bin/time -v -o "$W/t.build" "$W/rh" build "$REL" --output "$IMG" --level 1 -q >/dev/null
fi
# fig FILE: wall, CPU (user+sys), CPU/wall and peak RSS from GNU time -v.
fig() {
  awk -F': ' '/Elapsed/ {n=split($2,p,":"); e=0; for(i=1;i<=n;i++) e=e*60+p[i]}
    /User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {m=$2}
    END {printf "| %.1f s | %.1f s | %.2f | %.0f MiB |", e, u+s, (u+s)/e, m/1024}' "$1"
}
echo "| | wall | CPU | CPU/wall | peak RSS |"
echo "| --- | ---: | ---: | ---: | ---: |"
[ -f "$W/t.build" ] && echo "| build (whole release, self-check) $(fig "$W/t.build")"
for sel in "--iso" "--pxe" "--iso --pxe"; do
  out="$W/out${sel// /}"
  mkdir -p "$out" "$W/tmp"
  # shellcheck disable=SC2086
  /usr/bin/time -v -o "$W/t.rh" "$W/rh" rehydrate "$out" $sel --image "$IMG" --no-progress --tmpdir "$W/tmp"
  for f in "$out"/*; do
    cmp "$f" "$REL/$(basename "$f")" || { echo "$f differs from the release's" >&2; exit 1; }
  done
  echo "| rehydrate $sel ($(ls "$out" | wc -l) files, $(du -cb "$out"/* | tail -1 | cut -f1) B) $(fig "$W/t.rh")"
  [ "$sel" = "--pxe" ] || rm -rf "$out"
done
rootfs=$(ls "$W"/out--pxe/*live-rootfs*)
mkdir "$W/cpio" && (cd "$W/cpio" && cpio -i --quiet root.erofs <"$rootfs")
"$BIN/fsck.erofs" --extract="$W/tree" "$W/cpio/root.erofs" >/dev/null
rm -rf "$W/out--pxe"
/usr/bin/time -v -o "$W/t.mkfs" "$BIN/mkfs.erofs" --quiet -zlzma,level=6 -Efragments -C1048576 \
  -T1736035200 -U2b4e6f1a-9c3d-4e5f-8a7b-0c1d2e3f4a5b --all-root "$W/again.erofs" "$W/tree"
echo "| mkfs.erofs (same options, the extracted tree, $(stat -c %s "$W/again.erofs") B; root.erofs $(stat -c %s "$W/cpio/root.erofs") B) $(fig "$W/t.mkfs")"

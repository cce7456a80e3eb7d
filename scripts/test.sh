#!/usr/bin/env bash
# The whole test suite: installs the real tools the tests drive, then vet, gofmt and every test
# (unit tests, fuzz seed corpora, end-to-end tests against real registries, skopeo and qemu-img).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
scripts/setup-debian.sh
echo "== go vet" >&2
go vet ./...
echo "== gofmt" >&2
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi
echo "== tests/policycheck (containers/image verifier the e2e tests run; fetches its modules now)" >&2
(cd tests/policycheck && CGO_ENABLED=0 go build -tags containers_image_openpgp,containers_image_storage_stub -o /dev/null .)
echo "== go test" >&2
go test -count=1 -timeout 75m ./... "$@"

#!/usr/bin/env bash
# Run crid's end-to-end tests (test/e2e) inside the VM of test/vm/run.sh:
#
#   test/vm/e2e.sh [run.sh options] [-- test binary flags]
#   test/vm/e2e.sh --timeout 20m -- -test.run 'TestPodLifecycle|TestIsolationResources'
#
# The guest has no Go toolchain, so everything is built here: crid's
# binaries (make build), the test binary and the helper programs the tests
# would otherwise `go build` (the CNI failpoint plugin, the NRI plugin; the
# harness takes them from $CRID_E2E_PREBUILT). The guest's own registry,
# bridge and CNI network are the harness's, as on the host.
set -euo pipefail

# shellcheck source=args.sh
source "$(dirname "${BASH_SOURCE[0]}")/args.sh"
testargs=("${guestargs[@]}")
[ ${#testargs[@]} -gt 0 ] || testargs=(-test.timeout 60m)

make build >/dev/null
go test -c -o bin/e2e.test ./test/e2e/
CGO_ENABLED=0 go build -o bin/crid-e2e-cnifail ./test/e2e/cnifail
CGO_ENABLED=0 go build -o bin/crid-e2e-nriplugin ./test/e2e/nriplugin
CGO_ENABLED=0 go build -o bin/crid-e2e-faultwrap ./test/e2e/faultwrap
CGO_ENABLED=0 go build -tags faultinject -o bin/crid-e2e-crid-faultinject ./cmd/crid

# The tests find their helper packages relative to test/e2e, as go test
# runs them.
# shellcheck disable=SC2016 # expanded in the guest
exec test/vm/run.sh "${vmargs[@]}" -- sh -c 'cd test/e2e && CRID_E2E_PREBUILT=$CRID_BIN exec "$CRID_BIN/e2e.test" -test.v "$@"' e2e "${testargs[@]}"

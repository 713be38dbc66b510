#!/usr/bin/env bash
# critest, whole (both streaming runs), against crid inside the Debian VM
# of test/vm/run.sh: systemd, cgroup v2, AppArmor. Reports come back in
# <out>/results/conformance; the specs of expected-pass-vm.txt must pass.
#
#   test/vm/critest.sh [run.sh options] [-- test/conformance/run.sh options]
#
# About 40-60 minutes under TCG emulation; CI runs a focused part of it
# (test/vm/ci.sh).
set -euo pipefail

# shellcheck source=args.sh
source "$(dirname "${BASH_SOURCE[0]}")/args.sh"

make build >/dev/null
CGO_ENABLED=0 go build -o bin/crid-junitsum ./test/conformance/junitsum
[ -x bin/cri-tools/critest ] || ./test/conformance/build-tools.sh "$REPO/bin/cri-tools"

# shellcheck disable=SC2016 # expanded in the guest
exec test/vm/run.sh --timeout 120m "${vmargs[@]}" -- sh -c 'exec test/conformance/run.sh --prebuilt "$CRID_BIN" --crid "$CRID_BIN/crid" --out "$CRID_VM_OUT/conformance" --expected test/conformance/expected-pass-vm.txt "$@"' critest "${guestargs[@]}"

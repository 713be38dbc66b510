#!/usr/bin/env bash
# The VM stage of CI (scripts/test.sh): one boot of the Debian VM of
# test/vm/run.sh (systemd, cgroup v2, AppArmor, criu) runs the e2e tests
# whose behaviour depends on the node and critest's AppArmor, OOM and
# stats specs (test/vm/ci-guest.sh). The whole suites in the VM are
# `make vm-e2e` and `test/vm/critest.sh` (docs/vm.md).
#
#   test/vm/ci.sh [run.sh options]
#
# CRID_VM_E2E_RUN and CRID_VM_CRITEST_FOCUS override the selection.
# Results: <out>/results (default _output/vm/results): e2e.log and
# conformance/ (JUnit, summary).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
export PATH=$PATH:/usr/local/go/bin

# The node-dependent tests: cgroup v2 files, limits and stats (PSI), the
# systemd cgroup driver, crid as a systemd service, devices on v2, OOM
# through memory.events, pod user namespaces (refused on 6.1), AppArmor and
# checkpointing.
e2e_run=${CRID_VM_E2E_RUN:-'^(TestCgroupV2|TestSystemdCgroupDriver|TestSystemdService|TestIsolationResources|TestIsolationDevices|TestUsernsStatus|TestUsernsPod|TestUsernsInvalid|TestAppArmor.*|TestCheckpoint.*)$'}
focus=${CRID_VM_CRITEST_FOCUS:-'AppArmor|OOMKilled|stats'}

make build >/dev/null
go test -c -o bin/e2e.test ./test/e2e/
CGO_ENABLED=0 go build -o bin/crid-e2e-cnifail ./test/e2e/cnifail
CGO_ENABLED=0 go build -o bin/crid-e2e-nriplugin ./test/e2e/nriplugin
CGO_ENABLED=0 go build -o bin/crid-junitsum ./test/conformance/junitsum
[ -x bin/cri-tools/critest ] || ./test/conformance/build-tools.sh "$REPO/bin/cri-tools"

exec test/vm/run.sh --timeout 40m "$@" -- bash test/vm/ci-guest.sh "$e2e_run" "$focus"

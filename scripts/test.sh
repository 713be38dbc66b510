#!/usr/bin/env bash
# Runs crid's whole test suite as root: unit tests, integration tests
# against a real crid (real runc, CNI, registry on 127.0.0.1), critest, and
# the CI subset of kubelet's node conformance suite (test/node-e2e), and the
# tests that depend on the node in a Debian VM (test/vm/ci.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
./scripts/deps.sh
./scripts/build-runc.sh
make build
echo "== vet, gofmt, staticcheck"
go vet ./...
unformatted=$(gofmt -l cmd internal test images 2>/dev/null)
[ -z "$unformatted" ] || { echo "not gofmt-ed: $unformatted" >&2; exit 1; }
GOBIN="$PWD/bin" go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
./bin/staticcheck ./...
echo "== unit and package integration tests"
go test -count=1 -p 1 -timeout 20m $(go list ./... | grep -v /test/e2e)
echo "== fuzz (bounded: FUZZTIME per target, default 15s)"
./scripts/fuzz.sh
echo "== crictl and critest"
./test/conformance/build-tools.sh "$PWD/bin/cri-tools"
echo "== end-to-end tests"
CRID_BIN="$PWD/bin" CRICTL="$PWD/bin/cri-tools/crictl" go test -count=1 -timeout 20m -v ./test/e2e/ 2>&1 | tee _output/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok)' || true
grep -q '^ok' _output/e2e.log
echo "== conformance (critest)"
./test/conformance/run.sh --crid "$PWD/bin/crid" --tools "$PWD/bin/cri-tools" --out "$PWD/_output/conformance"
echo "== node conformance (kubelet's NodeConformance specs, CI subset; make node-e2e runs them all)"
./test/node-e2e/run.sh --subset ci --crid "$PWD/bin/crid" --out "$PWD/_output/node-e2e/crid-ci"
echo "== on a real node: a Debian 12 VM with systemd, cgroup v2 and AppArmor (test/vm/ci.sh)"
./test/vm/ci.sh --out "$PWD/_output/vm"

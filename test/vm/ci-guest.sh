#!/bin/bash
# The VM stage of CI, inside the guest (test/vm/ci.sh runs it through
# test/vm/run.sh, in the read-only checkout): the e2e tests whose behaviour
# depends on the node, then critest's specs of expected-pass-vm-ci.txt.
# Both always run; the exit status is 1 if either failed. Logs and reports
# go to $CRID_VM_OUT (the host's <out>/results).
#   ci-guest.sh E2E_REGEX CRITEST_FOCUS
set -u
e2e_run=${1:?e2e test regex}
focus=${2:?critest focus}
out=${CRID_VM_OUT:?}
rc=0

echo "== vm: e2e ($e2e_run)"
start=$(date +%s)
(cd test/e2e && CRID_E2E_PREBUILT=$CRID_BIN "$CRID_BIN/e2e.test" -test.v -test.run "$e2e_run" -test.timeout 25m) 2>&1 |
	tee "$out/e2e.log" | grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|^\s+--- '
e2e_rc=${PIPESTATUS[0]}
echo "vm: e2e finished in $(($(date +%s) - start)) s (exit $e2e_rc)"
if [ "$e2e_rc" != 0 ]; then
	rc=1
	echo "vm: e2e failed; the end of its log:"
	tail -60 "$out/e2e.log"
fi

echo "== vm: critest ($focus)"
start=$(date +%s)
if test/conformance/run.sh --prebuilt "$CRID_BIN" --crid "$CRID_BIN/crid" --out "$out/conformance" \
	--runs spdy --focus "$focus" --expected test/conformance/expected-pass-vm-ci.txt; then
	echo "vm: critest passed in $(($(date +%s) - start)) s"
else
	rc=1
	echo "vm: critest failed after $(($(date +%s) - start)) s"
fi
cat "$out/conformance/summary.txt" 2>/dev/null
exit $rc

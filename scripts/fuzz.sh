#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (FUZZTIME, default 15s), one
# after another, and fails if any finds a crasher (written by go test to
# the package's testdata/fuzz/<FuzzName>/, where it then stays as a
# regression input of the plain test run). Needs root: the import fuzzers
# unpack layers (device nodes, overlay whiteouts) for real.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
FUZZTIME=${FUZZTIME:-15s}
# Interesting inputs are minimised before they join the corpus; at the
# default of 60s per input the slow targets (an image import is a few ms)
# would spend their whole budget minimising.
MINIMIZE=${FUZZMINIMIZETIME:-50x}

targets=(
	"./internal/image FuzzParseReference"
	"./internal/image FuzzImportArchive"
	"./internal/image FuzzImportOCILayout"
	"./internal/image FuzzImportDockerSave"
	"./internal/image FuzzUnpackLayers"
	"./internal/image FuzzPull"
	"./internal/oci FuzzParsePasswd"
	"./internal/oci FuzzParseGroup"
	"./internal/oci FuzzResolveUser"
	"./internal/core FuzzSandboxSpec"
	"./internal/core FuzzContainerSpec"
)
failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "== $name ($pkg, $FUZZTIME)"
	# A real finding is written to testdata ("Failing input written to").
	# go's fuzzer can also end a run with a bare "context deadline
	# exceeded" when -fuzztime runs out while a worker is busy on an input
	# (no input is written): that is the engine's, not a finding, so it is
	# reported and not counted.
	out=$(mktemp)
	if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="$MINIMIZE" "$pkg" 2>&1 | tee "$out"; then
		if grep -q "Failing input written to" "$out" || ! grep -q "context deadline exceeded" "$out"; then
			failed+=("$name")
		else
			echo "fuzz: $name stopped at its time limit inside an input (no crasher written); not a finding" >&2
		fi
	fi
	rm -f "$out"
done
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz targets that failed: ${failed[*]}" >&2
	exit 1
fi
echo "all ${#targets[@]} fuzz targets passed"

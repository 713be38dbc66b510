#!/usr/bin/env bash
# Run critest (cri-tools v1.37.0) against crid, offline.
#
# Usage: test/conformance/run.sh [options]
#   --crid PATH      crid binary (default: bin/crid, built from ./cmd/crid with
#                    crid-monitor next to it when missing)
#   --out DIR        reports and logs (default: _output/conformance)
#   --tools DIR      where crictl/critest are built/cached (default: bin/cri-tools)
#   --runs LIST      comma list of spdy,websocket (default: both)
#   --focus REGEX    only specs matching (ginkgo --focus)
#   --skip REGEX     skip specs matching (ginkgo --skip)
#   --keep           keep the working directory (crid root/state) afterwards
#   --expected FILE  specs that must pass (default: expected-pass.txt here)
#   --prebuilt DIR   take crictl, critest, crid-testregistry and crid-junitsum
#                    from DIR and build nothing (a node without Go: test/vm)
#   --endpoint URL   test an already running CRI runtime at URL (unix://...)
#                    instead of starting crid; the registry is still started
#                    (used to validate images and tooling against containerd)
# Environment: REGISTRY_ADDR (default 127.0.0.1:0, a free port; 127.0.0.1:5000 with --endpoint), WORK (default
# /tmp/crid-conformance), CRITEST_TIMEOUT (ginkgo suite timeout, default 90m),
# WORK_LOCK_WAIT (seconds to wait for another run on WORK, default 3600).
#
# It starts crid-testregistry and crid (config from crid-config.toml.tmpl,
# CNI network from cni.conflist.tmpl, all state under $WORK), runs critest
# once with SPDY streaming and once with websockets, writes JUnit reports,
# logs and summary.txt to the output dir, and fails when a spec listed in
# expected-pass.txt did not pass. It stops everything it started and removes
# what crid left behind (pods, runc containers, mounts, the CNI bridge and
# its iptables rules). Needs root.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

crid=""
out="$repo/_output/conformance"
tools="$repo/bin/cri-tools"
runs="spdy,websocket"
focus=""
skip=""
keep=false
endpoint=""
expected="$here/expected-pass.txt"
prebuilt=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--crid) crid=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--tools) tools=$2; shift 2 ;;
	--runs) runs=$2; shift 2 ;;
	--focus) focus=$2; shift 2 ;;
	--skip) skip=$2; shift 2 ;;
	--keep) keep=true; shift ;;
	--endpoint) endpoint=$2; shift 2 ;;
	--expected) expected=$2; shift 2 ;;
	--prebuilt) prebuilt=$2; shift 2 ;;
	-h | --help) sed -n '2,32p' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

[[ -f $expected ]] || { echo "run.sh: --expected $expected: no such file" >&2; exit 2; }
expected=$(cd "$(dirname "$expected")" && pwd)/$(basename "$expected")

# crid is configured with whatever port the registry gets; a runtime under
# test at --endpoint was configured beforehand for the conventional one.
if [[ -n $endpoint ]]; then REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:5000}; else REGISTRY_ADDR=${REGISTRY_ADDR:-127.0.0.1:0}; fi
WORK=${WORK:-/tmp/crid-conformance}
CRITEST_TIMEOUT=${CRITEST_TIMEOUT:-90m}
BRIDGE=cridconf0
NETNAME=crid-conformance

log() { echo "run.sh: $(date +%T) $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root"
case $WORK in /tmp/?* | /var/tmp/?* | /run/?*) ;; *) die "WORK=$WORK: use a private directory under /tmp, /var/tmp or /run" ;; esac

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/junit-*.xml "$out"/critest-*.log "$out"/summary.txt
bindir="$WORK/bin"
sock="$WORK/state/crid.sock"
registry_pid=""
crid_pid=""
owned=false # this run holds $WORK (and so may sweep it)

# ---- cleanup -----------------------------------------------------------
# shellcheck source=../lib/sweep.sh
. "$here/../lib/sweep.sh"

# sweep: what crid leaves when it stops (its namespace pin directories stay
# mounted, on purpose), what it could not clean up, or what a killed earlier
# run left: its processes, the runc containers of its handler root, mounts
# under $WORK, the bridge and the iptables rules of our network. Each thing
# found is logged with what was done to it.
sweep() {
	sweep_procs "$WORK"
	sweep_runc runc "$WORK/state/runtime/runc"
	sweep_mounts "$WORK"
	sweep_cni "$BRIDGE" "$NETNAME"
}

cleanup() {
	local rc=$?
	set +e
	if [[ -n $crid_pid ]] && kill -0 "$crid_pid" 2>/dev/null && [[ -S $sock ]]; then
		# Let crid tear pods down itself (CNI DEL, runc delete, unmounts).
		log "removing pods left in crid"
		timeout 120 "$tools/crictl" --runtime-endpoint "unix://$sock" rmp --all --force >>"$out/cleanup.log" 2>&1
	fi
	stop_pid "$crid_pid" crid 30
	stop_pid "$registry_pid" crid-testregistry 10
	if [[ $owned == true ]]; then
		sweep
		if [[ $keep == true ]]; then
			log "keeping $WORK"
		else
			rm -rf "$WORK"
		fi
		release_work "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- build ---------------------------------------------------------------
# One run at a time per WORK (the bridge and network names are fixed too);
# a second run waits for the first. Once the lock is ours, anything at
# $WORK is what a killed run left: remove it and go on.
claim_work "$WORK" "${WORK_LOCK_WAIT:-3600}" || die "$WORK is still in use by another run after ${WORK_LOCK_WAIT:-3600}s"
owned=true
if [[ -e $WORK ]]; then
	log "$WORK was left by a run that did not finish; removing what it left"
	sweep
	rm -rf "$WORK"
fi
mkdir -p "$bindir" "$WORK/cni/net.d" "$WORK/cni/ipam"
# critest's AppArmor specs load their test profiles with `sudo
# apparmor_parser`. This runs as root; where sudo is not installed (the
# VM of test/vm), sudo would only run the command as it is.
if ! command -v sudo >/dev/null; then
	printf '#!/bin/sh\n# sudo as root: run the command (test/conformance/run.sh)\nexec "$@"\n' >"$bindir/sudo"
	chmod 0755 "$bindir/sudo"
	export PATH=$bindir:$PATH
fi

if [[ -n $prebuilt ]]; then
	tools=$prebuilt
	for b in crictl critest crid-testregistry crid-junitsum; do
		[[ -x $prebuilt/$b ]] || die "--prebuilt $prebuilt has no $b"
	done
	cp "$prebuilt/crid-testregistry" "$bindir/crid-testregistry"
else
	"$here/build-tools.sh" "$tools"
	log "building crid-testregistry"
	(cd "$repo" && go build -o "$bindir/crid-testregistry" ./cmd/crid-testregistry)
fi
if [[ -n $endpoint ]]; then
	: # an external runtime is tested; crid is not needed
elif [[ -z $crid ]]; then
	if [[ -x $repo/bin/crid ]]; then
		crid=$repo/bin/crid
	else
		log "building crid and crid-monitor"
		(cd "$repo" && go build -o "$bindir/crid" ./cmd/crid && go build -o "$bindir/crid-monitor" ./cmd/crid-monitor)
		crid=$bindir/crid
	fi
fi
if [[ -z $endpoint ]]; then
	[[ -x $crid ]] || die "crid binary $crid not found"
	crid=$(cd "$(dirname "$crid")" && pwd)/$(basename "$crid")
fi

# ---- registry ------------------------------------------------------------
# Port 0: the registry takes a free port and names it in its ready file,
# so a registry already on the machine (often on :5000) is no obstacle.
if [[ ${REGISTRY_ADDR##*:} != 0 ]] && (exec 3<>"/dev/tcp/${REGISTRY_ADDR%:*}/${REGISTRY_ADDR##*:}") 2>/dev/null; then
	die "$REGISTRY_ADDR is already in use; set REGISTRY_ADDR to a free loopback port (or port 0)"
fi
log "starting crid-testregistry on $REGISTRY_ADDR"
"$bindir/crid-testregistry" --addr "$REGISTRY_ADDR" --ready-file "$WORK/registry.ready" >"$out/registry.log" 2>&1 &
registry_pid=$!
for ((i = 0; i < 1200; i++)); do
	[[ -f $WORK/registry.ready ]] && break
	kill -0 "$registry_pid" 2>/dev/null || die "crid-testregistry exited; see $out/registry.log"
	sleep 0.1
done
[[ -f $WORK/registry.ready ]] || die "crid-testregistry not ready after 120s"
REGISTRY_ADDR=$(head -n1 "$WORK/registry.ready")
log "crid-testregistry serves on $REGISTRY_ADDR"

# ---- crid ----------------------------------------------------------------
if [[ -n $endpoint ]]; then
	log "testing the runtime at $endpoint (crid is not started)"
	"$tools/crictl" --runtime-endpoint "$endpoint" version >"$out/crictl-version.txt" 2>&1 ||
		die "no CRI runtime answers at $endpoint"
else
	sed -e "s|@WORK@|$WORK|g" -e "s|@REGISTRY@|$REGISTRY_ADDR|g" "$here/crid-config.toml.tmpl" >"$WORK/crid.toml"
	sed -e "s|@WORK@|$WORK|g" "$here/cni.conflist.tmpl" >"$WORK/cni/net.d/10-crid-conformance.conflist"
	# Another bridge routing the pods' subnet (another tool on this machine)
	# would take the traffic to the pods, and every networking spec would
	# time out: say so now instead.
	subnet=$(sed -n 's/.*"subnet": "\([0-9./]*\)".*/\1/p' "$here/cni.conflist.tmpl")
	if other=$(ip -o route show to "$subnet" | grep -v " dev $BRIDGE " | head -n1) && [[ -n $other ]]; then
		die "another interface routes the pods' subnet $subnet: $other"
	fi
	cp "$WORK/crid.toml" "$out/crid.toml"
	log "starting crid ($crid)"
	"$crid" --config "$WORK/crid.toml" --log-level info >"$out/crid.log" 2>&1 &
	crid_pid=$!
	for ((i = 0; i < 600; i++)); do
		if [[ -S $sock ]] && "$tools/crictl" --runtime-endpoint "unix://$sock" --timeout 2s version >/dev/null 2>&1; then
			break
		fi
		kill -0 "$crid_pid" 2>/dev/null || die "crid exited; see $out/crid.log"
		sleep 0.1
	done
	"$tools/crictl" --runtime-endpoint "unix://$sock" version >"$out/crictl-version.txt" 2>&1 ||
		die "crid does not answer on $sock after 60s; see $out/crid.log"
fi
log "runtime is up: $(tr '\n' ' ' <"$out/crictl-version.txt")"
cri=${endpoint:-unix://$sock}

# ---- critest -------------------------------------------------------------
reports=()
IFS=, read -r -a run_list <<<"$runs"
for run in "${run_list[@]}"; do
	args=(
		--runtime-endpoint "$cri"
		--image-endpoint "$cri"
		"--ginkgo.junit-report=$out/junit-$run.xml"
		--ginkgo.no-color
		# A spec that fails once on a loaded 2-core machine gets one more try
		# (CRI-O runs critest with 3 attempts); a real regression fails twice.
		--ginkgo.flake-attempts=2
		"--ginkgo.timeout=$CRITEST_TIMEOUT"
	)
	case $run in
	spdy) ;;
	websocket) args+=(-websocket-exec -websocket-attach -websocket-portforward) ;;
	*) die "unknown run $run (want spdy or websocket)" ;;
	esac
	# crid's config (crid-config.toml.tmpl) listens for NRI plugins here:
	# critest's NRI specs connect their own plugin to it.
	[[ -n $endpoint ]] || args+=("-nri-socket=$WORK/nri/nri.sock")
	[[ -n $focus ]] && args+=("--ginkgo.focus=$focus")
	[[ -n $skip ]] && args+=("--ginkgo.skip=$skip")
	log "critest run $run (log: $out/critest-$run.log)"
	start=$(date +%s)
	rc=0
	(cd "$WORK" && "$tools/critest" "${args[@]}") >"$out/critest-$run.log" 2>&1 || rc=$?
	log "critest run $run finished in $(($(date +%s) - start))s (exit $rc)"
	reports+=("$run=$out/junit-$run.xml")
	[[ -n $endpoint ]] || kill -0 "$crid_pid" 2>/dev/null || die "crid died during run $run; see $out/crid.log"
done

# ---- summary -------------------------------------------------------------
log "summary ($out/summary.txt)"
junitsum=(go run ./test/conformance/junitsum)
[[ -z $prebuilt ]] || junitsum=("$prebuilt/crid-junitsum")
(cd "$repo" && "${junitsum[@]}" --expected "$expected" --out "$out/summary.txt" --markdown "$out/results.md" --reasons "$here/reasons.tsv" "${reports[@]}")

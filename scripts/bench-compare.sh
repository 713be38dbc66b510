#!/usr/bin/env bash
# bench-compare.sh: measure crid against Debian's containerd 1.6 with
# crid-bench, alternating the two runtimes scenario by scenario, and write
# docs/performance.md (medians over --runs rounds, ratio crid/containerd).
#
# Both runtimes get a private root/state/socket, the same runc, the same CNI
# config dir (a private bridge network) and the same images, served by the
# test registry (cmd/crid-testregistry) on 127.0.0.1. Everything the script
# starts or creates is removed on exit, also on Ctrl-C; the containerd
# package stays installed.
#
# Usage: scripts/bench-compare.sh [options] [-- extra crid-bench run flags]
#   --runs R              rounds (default 3)
#   --registry ADDR       test registry address (default 127.0.0.1:5000);
#                         started from cmd/crid-testregistry if not answering
#   --scenarios "A B"     default: "floor pod-lifecycle exec-sync list pull memory";
#                         also: density, pull-size (generated images of
#                         --pull-sizes MiB, gzip and zstd, pushed to the test
#                         registry), churn (2000 pod cycles, the daemon's
#                         footprint sampled; turns both runtimes' metrics
#                         endpoints on, for go_goroutines)
#   --containerd-only     measure containerd alone (no crid)
#   --out FILE            default docs/performance.md
#   --work DIR            scratch dir (default: mktemp)
#   --results DIR         also keep every run's JSON report in DIR (the
#                         scratch dir is removed at the end)
#   (env CRID_CONFIG_EXTRA: TOML appended to crid's config)
#   --serve               start both runtimes, print their sockets and wait
#                         (for profiling by hand); Ctrl-C cleans up
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
RUNS=3
REG=127.0.0.1:5000
SCENARIOS="floor pod-lifecycle exec-sync list pull memory"
ONLY_CONTAINERD=0
OUT=docs/performance.md
W=""
SERVE=0
RESULTS=""
EXTRA=()
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) RUNS=$2; shift 2 ;;
	--registry) REG=$2; shift 2 ;;
	--scenarios) SCENARIOS=$2; shift 2 ;;
	--containerd-only) ONLY_CONTAINERD=1; shift ;;
	--out) OUT=$2; shift 2 ;;
	--work) W=$2; shift 2 ;;
	--results) RESULTS=$2; shift 2 ;;
	--serve) SERVE=1; shift ;;
	--) shift; EXTRA=("$@"); break ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
done

PAUSE_IMAGE=registry.k8s.io/pause:3.10
IMAGE=registry.k8s.io/e2e-test-images/busybox:1.29-2
# The second pull image shares the first's base layer.
PULL_IMAGES=${PULL_IMAGES:-registry.k8s.io/e2e-test-images/busybox:1.29-2,registry.k8s.io/e2e-test-images/nginx:1.14-2}
# The runc crid's install builds (scripts/build-runc.sh): Debian's 1.1.5
# has known escapes. Both runtimes run the same binary.
RUNC=${RUNC:-/usr/local/sbin/runc}
# Per run, so that two runs (or a --serve beside a run) never share or
# delete each other's bridge and addresses.
BRIDGE=${BRIDGE:-cb$$}
# 10.150-199: clear of the subnets of crid's default network (10.88), the
# node-e2e (10.98) and e2e (10.99) runs and critest's (10.123), which may
# run on the same machine (a bench on 10.234, critest's old subnet, once took
# its pod routes).
SUBNET=${SUBNET:-10.$((150 + $$ % 50)).0.0/16}

[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
if [ -z "$W" ]; then W=$(mktemp -d /tmp/bench-compare.XXXXXX); fi
mkdir -p "$W"
W=$(cd "$W" && pwd)
log() { echo "[bench-compare $(date +%T)] $*" >&2; }

PIDS_TO_STOP=()
cleanup() {
	local rc=$?
	set +e
	log "cleaning up"
	for sock in "$W/crid/crid.sock" "$W/containerd/containerd.sock"; do
		[ -S "$sock" ] && "$W/crid-bench" cleanup --endpoint "unix://$sock" >&2
	done
	for ((i = ${#PIDS_TO_STOP[@]} - 1; i >= 0; i--)); do
		pid=${PIDS_TO_STOP[$i]}
		kill -TERM "$pid" 2>/dev/null && for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	done
	# containerd shims outlive containerd: end the ones serving our socket.
	for p in /proc/[0-9]*; do
		if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "-address $W/containerd/containerd.sock"; then
			kill -KILL "${p#/proc/}" 2>/dev/null
		fi
	done
	for root in "$W"/containerd/runc/* "$W"/crid/state/runtime/* "$W"/bench-work*/runc; do
		[ -d "$root" ] || continue
		for c in $("$RUNC" --root "$root" list -q 2>/dev/null); do "$RUNC" --root "$root" delete --force "$c"; done
	done
	# Mounts under the work dir, deepest first.
	awk -v w="$W" '$2 ~ "^"w {print $2}' /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done
	# netns pins that still reference our runtimes' pods were removed by the
	# sweep above; report any left so they can be checked by hand.
	# crid-bench's floor names its netns cb-<run>-floor-N; those left by a
	# killed floor run are ours. Others created meanwhile are only reported.
	comm -13 "$W/netns.before" <(ls /var/run/netns 2>/dev/null | sort) 2>/dev/null | while read -r ns; do
		case $ns in
		cb-*-floor-*) ip netns del "$ns" ;;
		*) echo "[bench-compare] netns $ns appeared during the run (not removed: may be someone else's)" >&2 ;;
		esac
	done
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
	# containerd's CRI puts pods without a cgroup parent under /k8s.io; remove
	# that parent if this run created it and it is empty now.
	if [ ! -s "$W/k8s.io-cgroup.before" ]; then
		for d in /sys/fs/cgroup/*/k8s.io; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
	fi
	rm -rf "$W"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ls /var/run/netns 2>/dev/null | sort >"$W/netns.before" || true
ls -d /sys/fs/cgroup/*/k8s.io >"$W/k8s.io-cgroup.before" 2>/dev/null || true

if ! command -v containerd >/dev/null; then
	log "installing containerd"
	apt-get update -qq && apt-get install -y -qq --no-upgrade containerd >&2
fi

log "building crid-bench"
go build -o "$W/crid-bench" ./cmd/crid-bench
if [ "$ONLY_CONTAINERD" = 0 ] && [ ! -x bin/crid ]; then
	log "building crid"
	mkdir -p bin
	go build -o bin/crid ./cmd/crid
	go build -o bin/crid-monitor ./cmd/crid-monitor
fi

# Test registry.
if ! curl -fsS "http://$REG/v2/" >/dev/null 2>&1; then
	log "starting test registry on $REG"
	go build -o "$W/crid-testregistry" ./cmd/crid-testregistry
	# The registry answers /v2/ before every image is pushed; the ready
	# file says the catalog is complete.
	"$W/crid-testregistry" --addr "$REG" --ready-file "$W/registry.ready" >"$W/registry.log" 2>&1 &
	PIDS_TO_STOP+=($!)
	for _ in $(seq 300); do [ -f "$W/registry.ready" ] && break; sleep 0.1; done
	[ -f "$W/registry.ready" ] || { log "registry did not start"; cat "$W/registry.log" >&2; exit 1; }
fi

# One CNI network for both runtimes: a private bridge, no masquerading (no
# iptables rules), IPAM state inside the work dir.
mkdir -p "$W/net.d" "$W/cni-ipam"
cat >"$W/net.d/10-bench.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "crid-bench",
 "plugins": [{"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$W/cni-ipam"}}]}
JSON

# containerd 1.6 cannot put a path prefix in a CRI mirror endpoint; a
# hosts.toml host with override_path=true can (the host URL then includes
# /v2). server points at the registry too, so a failing mirror never falls
# back to the real registry.k8s.io.
C=$W/containerd
mkdir -p "$C/certs.d/registry.k8s.io"
cat >"$C/certs.d/registry.k8s.io/hosts.toml" <<TOML
server = "http://$REG/v2/registry.k8s.io"
[host."http://$REG/v2/registry.k8s.io"]
  capabilities = ["pull", "resolve"]
  override_path = true
TOML
cat >"$C/config.toml" <<TOML
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$C/containerd.sock"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$C/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
        Root = "$C/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$W/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$C/certs.d"
TOML
# The churn scenario reads go_goroutines from each daemon's metrics
# endpoint; other scenarios run without it, as before.
CONTAINERD_METRICS="" CRID_METRICS=""
if [[ " $SCENARIOS " == *" churn "* ]]; then
	CONTAINERD_METRICS=127.0.0.1:$((20000 + $$ % 20000))
	CRID_METRICS=127.0.0.1:$((40000 + $$ % 20000))
	printf '[metrics]\n  address = "%s"\n' "$CONTAINERD_METRICS" >>"$C/config.toml"
fi
log "starting containerd $(containerd --version | awk '{print $3}')"
containerd --config "$C/config.toml" >"$C/containerd.log" 2>&1 &
CONTAINERD_PID=$!
PIDS_TO_STOP+=($CONTAINERD_PID)
for _ in $(seq 100); do [ -S "$C/containerd.sock" ] && break; sleep 0.1; done

if [ "$ONLY_CONTAINERD" = 0 ]; then
	R=$W/crid
	mkdir -p "$R"
	cat >"$R/config.toml" <<TOML
root = "$R/root"
state = "$R/state"
socket = "$R/crid.sock"
log_level = "warn"
cgroup_driver = "cgroupfs"

[images]
sandbox_image = "$PAUSE_IMAGE"

[[images.registries]]
host = "registry.k8s.io"
mirrors = ["http://$REG/registry.k8s.io"]
fallback = false

[runtime]
default_handler = "runc"
restrict_oom_score_adj = true

[runtime.handlers.runc]
path = "$RUNC"

[network]
conf_dir = "$W/net.d"
bin_dirs = ["/usr/lib/cni"]
TOML
	# CRID_CONFIG_EXTRA: TOML appended to crid's config, e.g. to measure
	# crid with [metrics] and [tracing] on.
	if [ -n "${CRID_CONFIG_EXTRA:-}" ]; then printf '\n%s\n' "$CRID_CONFIG_EXTRA" >>"$R/config.toml"; fi
	if [ -n "$CRID_METRICS" ]; then printf '\n[metrics]\naddress = "%s"\n' "$CRID_METRICS" >>"$R/config.toml"; fi
	log "starting crid"
	bin/crid --config "$R/config.toml" >"$R/crid.log" 2>&1 &
	CRID_PID=$!
	PIDS_TO_STOP+=($CRID_PID)
	for _ in $(seq 100); do [ -S "$R/crid.sock" ] && break; sleep 0.1; done
	[ -S "$R/crid.sock" ] || { log "crid did not start"; cat "$R/crid.log" >&2; exit 1; }
fi

if [ "$SERVE" = 1 ]; then
	go build -o "$W/crid-bench" ./cmd/crid-bench
	log "serving: crid unix://$W/crid/crid.sock (pid ${CRID_PID:-none}), containerd unix://$C/containerd.sock (pid $CONTAINERD_PID)"
	log "bench: $W/crid-bench run <scenario> --endpoint ... --image $IMAGE --keep-images; Ctrl-C to clean up"
	# wait, unlike a foreground sleep, lets the INT/TERM trap run at once.
	while :; do sleep 3600 & wait $!; done
fi

# Root filesystems for the floor scenario: the same images, unpacked by
# containerd's own snapshotter and copied out.
FLOOR_ARGS=()
if [[ " $SCENARIOS " == *" floor "* ]]; then
	for img in "$PAUSE_IMAGE" "$IMAGE"; do
		name=$(basename "${img%%:*}")
		ctr -a "$C/containerd.sock" -n k8s.io images pull --plain-http --hosts-dir "$C/certs.d" "$img" >/dev/null
		mkdir -p "$W/mnt-$name" "$W/rootfs-$name"
		ctr -a "$C/containerd.sock" -n k8s.io images mount "$img" "$W/mnt-$name" >/dev/null
		cp -a "$W/mnt-$name/." "$W/rootfs-$name/"
		ctr -a "$C/containerd.sock" -n k8s.io images unmount --rm "$W/mnt-$name" >/dev/null
	done
	FLOOR_ARGS=(--floor-pause-rootfs "$W/rootfs-pause" --floor-rootfs "$W/rootfs-busybox" --cni-conf-dir "$W/net.d" --runc "$RUNC")
fi

bench() { # runtime scenario round
	local rt=$1 s=$2 r=$3 sock args=()
	case $rt in
	containerd) sock=$C/containerd.sock; args=(--daemon-pid "$CONTAINERD_PID" --monitor-name containerd-shim-runc-v2 --monitor-match "$C/containerd.sock")
		args+=(--store-dir "$C/root/io.containerd.content.v1.content" --store-dir "$C/root/io.containerd.snapshotter.v1.overlayfs")
		[ -n "$CONTAINERD_METRICS" ] && args+=(--metrics-url "http://$CONTAINERD_METRICS/v1/metrics") ;;
	crid) sock=$W/crid/crid.sock; args=(--daemon-pid "$CRID_PID" --monitor-name crid-monitor --monitor-match "$W/crid/")
		args+=(--store-dir "$W/crid/root/content" --store-dir "$W/crid/root/snapshots")
		[ -n "$CRID_METRICS" ] && args+=(--metrics-url "http://$CRID_METRICS/metrics")
		args+=(--leakcheck-root "$W/crid/root" --leakcheck-state "$W/crid/state" --leakcheck-network crid-bench --leakcheck-bridge "$BRIDGE") ;;
	esac
	[ "$s" = pull ] && args+=(--pull-image "$PULL_IMAGES")
	[ "$s" = pull-size ] && args+=(--registry "$REG")
	log "round $r: $s on $rt"
	# A failing scenario is recorded and reported, not fatal: the other
	# figures still get measured.
	if ! "$W/crid-bench" run "$s" --endpoint "unix://$sock" --image "$IMAGE" --keep-images \
		--json "$W/results/$rt-$s-$r.json" --work-dir "$W/bench-work-$rt" "${args[@]}" "${EXTRA[@]}" >"$W/results/$rt-$s-$r.txt"; then
		log "FAILED: $s on $rt in round $r"
		FAILED+=("$s on $rt (round $r)")
		# A partial report of a failed run is not a measurement.
		rm -f "$W/results/$rt-$s-$r.json"
	fi
}
FAILED=()

mkdir -p "$W/results"
for r in $(seq "$RUNS"); do
	for s in $SCENARIOS; do
		if [ "$s" = floor ]; then
			log "round $r: floor"
			"$W/crid-bench" run floor --endpoint "unix://$C/containerd.sock" --json "$W/results/floor-$r.json" --work-dir "$W/bench-work-floor" \
				"${FLOOR_ARGS[@]}" "${EXTRA[@]}" >"$W/results/floor-$r.txt"
			continue
		fi
		# Alternate which runtime goes first so neither always runs warm.
		if [ "$ONLY_CONTAINERD" = 1 ]; then
			bench containerd "$s" "$r"
		elif [ $((r % 2)) = 1 ]; then
			bench containerd "$s" "$r"; bench crid "$s" "$r"
		else
			bench crid "$s" "$r"; bench containerd "$s" "$r"
		fi
	done
done

# docs/performance.md
shopt -s nullglob
CD=() CR=()
for s in $SCENARIOS; do
	CD+=("$W"/results/containerd-"$s"-*.json)
	CR+=("$W"/results/crid-"$s"-*.json)
done
FL=("$W"/results/floor-*.json)
join() { local IFS=,; echo "$*"; }
{
	echo "# Performance: crid vs containerd"
	echo
	if [ "$ONLY_CONTAINERD" = 1 ]; then
		echo "**containerd-only run**: crid was not measured. Run \`scripts/bench-compare.sh\` to fill in crid's column and the ratios."
		echo
	fi
	echo "Generated by \`scripts/bench-compare.sh --runs $RUNS\` on $(date -u +%Y-%m-%d)."
	echo
	echo "- Machine: $(nproc) CPUs ($(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)), kernel $(uname -r), $(free -g | awk '/Mem:/{print $2}') GiB memory, $(. /etc/os-release; echo "$PRETTY_NAME"); shared with other work, so expect noise."
	echo "- containerd $(containerd --version | awk '{print $3}') (Debian), runc $($RUNC --version | awk 'NR==1{print $3}'), CNI plugins from Debian (bridge + host-local)."
	[ "$ONLY_CONTAINERD" = 0 ] && echo "- crid $(git -C "$REPO" rev-parse --short HEAD)."
	echo "- Image \`$IMAGE\`, sandbox image \`$PAUSE_IMAGE\`, served from a local registry; pull images \`$PULL_IMAGES\`."
	echo "- Each scenario ran $RUNS times per runtime, runtimes alternating (first runtime swapped each round); each figure is the median over the rounds of that round's figure."
	echo "- Ratio = crid / containerd: below 1.00x crid is faster or smaller (for throughput, above 1.00x crid is better)."
	echo
	if [ ${#FAILED[@]} -gt 0 ]; then
		echo "**Failed (not in the tables):** $(join "${FAILED[@]}")"
		echo
	fi
	echo "## Results"
	echo
	if [ ${#CR[@]} -gt 0 ]; then
		"$W/crid-bench" compare --baseline "$(join "${CD[@]}")" --target "$(join "${CR[@]}")"
	else
		"$W/crid-bench" compare --baseline "$(join "${CD[@]}")"
	fi
	if [ ${#FL[@]} -gt 0 ]; then
		echo "## Floor"
		echo
		echo "Bare cost any runtime pays per pod: a netns, one CNI ADD (libcni -> bridge), \`runc run\` of the pause bundle and of the container joining its namespaces; teardown is runc delete x2 + CNI DEL + netns removal. A runtime's startup minus startup-total here is its own overhead."
		echo
		"$W/crid-bench" compare --baseline-name "runc+CNI" --baseline "$(join "${FL[@]}")"
	fi
	# How the list calls grow with the containers present: one SVG per
	# call (crid-bench plot), both runtimes on the same axes, beside $OUT.
	LCD=("$W"/results/containerd-list-*.json) LCR=("$W"/results/crid-list-*.json)
	if [ ${#LCD[@]} -gt 0 ] && [ ${#LCR[@]} -gt 0 ]; then
		plotdir=$(dirname "$OUT")/perf
		mkdir -p "$plotdir"
		echo "## Curves"
		echo
		echo "How each list call's median grows with the containers present (the list scenario's sizes), crid and containerd on the same axes."
		echo
		for m in "ListContainers p50" "ListPodSandbox p50" "ContainerStatus p50" "ListContainerStats p50"; do
			slug=$(echo "$m" | tr 'A-Z ' 'a-z-')
			if "$W/crid-bench" plot --baseline "$(join "${LCD[@]}")" --target "$(join "${LCR[@]}")" \
				--scenario list --metric "$m" --out "$plotdir/list-$slug.svg" >&2; then
				echo "![list: $m](perf/list-$slug.svg)"
				echo
			fi
		done
	fi
	# The pull-size and churn curves: every figure of the scenario that
	# grows along its groups (size_mib=N or layers=N, cycles=N), crid and containerd on
	# the same axes.
	for s in pull-size churn; do
		SCD=("$W"/results/containerd-$s-*.json) SCR=("$W"/results/crid-$s-*.json)
		[ ${#SCD[@]} -gt 0 ] && [ ${#SCR[@]} -gt 0 ] || continue
		plotdir=$(dirname "$OUT")/perf
		mkdir -p "$plotdir"
		echo "### $s curves"
		echo
		grep -ho '"name": "[^"]*\(pull p50\|peak RSS\|daemon RSS\|daemon fds\|daemon threads\|daemon goroutines\)"' "${SCR[0]}" | sort -u | cut -d'"' -f4 |
			while read -r m; do
				slug=$(echo "$s-$m" | tr 'A-Z :' 'a-z--' | tr -s '-')
				if "$W/crid-bench" plot --baseline "$(join "${SCD[@]}")" --target "$(join "${SCR[@]}")" \
					--scenario "$s" --metric "$m" --out "$plotdir/$slug.svg" >&2; then
					echo "![$s: $m](perf/$slug.svg)"
					echo
				fi
			done
	done
	cat <<'MD'
## Method

`crid-bench` (cmd/crid-bench) is a gRPC client of CRI v1; no process is spawned per call.

- **pod-lifecycle**: N cycles of RunPodSandbox → CreateContainer → StartContainer → StopContainer(timeout 0) → StopPodSandbox → RemoveContainer → RemovePodSandbox; p50/p90/p99/max per call, startup = runp+create+start, throughput = cycles / wall time; sequentially and with C workers. One untimed warm-up cycle first (it also pulls the pause image).
- **exec-sync**: ExecSync `true` in one running container, sequentially and with C workers.
- **list**: Version, ListContainers, ListPodSandbox, ContainerStatus (random container) and ListContainerStats with 10, 100 and 300 running containers (10 per pod), on one warmed connection (50 untimed calls of each first); the cheap calls are timed 1000 times, ListContainerStats 20 times. Version does no work in either runtime: it is the gRPC round trip. **replayed** rows are the floor of each cheap call: crid-bench records the runtime's last response and times the same call against a replay server (a child process speaking just enough HTTP/2) that answers with those bytes and does nothing else. No server can be faster than its replayed row with this client; a runtime's figure minus it is all its own work could ever save.
- **pull**: PullImage after RemoveImage (cold), and the second image while the first (same base layer) is present.
- **memory**: RSS and PSS from /proc/PID/smaps_rollup over the runtime's process tree: the daemon, its descendants, and every monitor/shim process (containerd-shim-runc-v2, crid-monitor) with their descendants; pause processes counted apart; per-pod overhead = (daemon growth + monitors + pause) / pods; the containers' own workload is excluded.
- **floor**: see above.
- **pull-size**: cold PullImage of generated images (20 layers of 1 MiB files, half random bytes and half text, gzip and zstd) of each size, pushed to the test registry; after each RemoveImage the runtime's blob and layer dirs are back to their size before the first pull. Beside each pull, the floor measured by crid-bench: the same blobs fetched from the same registry, 3 layers at a time, to /dev/null, decompressed, and written out as files. Peak RSS is the daemon's VmHWM, reset before the pull.
- **churn**: 2000 pod cycles, the daemon's RSS, fds, threads and goroutines (go_goroutines) sampled every 100; slope by least squares; at the end no pod, container or monitor/shim process of the run may be left, and for crid test/e2e/leakcheck finds nothing new on the host.
MD
} >"$W/performance.md"
cp "$W/performance.md" "$OUT"
if [ -n "$RESULTS" ]; then mkdir -p "$RESULTS" && cp "$W"/results/*.json "$RESULTS"/; fi
log "wrote $OUT"

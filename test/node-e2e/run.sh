#!/usr/bin/env bash
# Run Kubernetes' node conformance suite (k8s.io/kubernetes/test/e2e_node,
# the [NodeConformance] specs of v1.37.2) against crid under a real kubelet,
# offline.
#
# Usage: test/node-e2e/run.sh [options]
#   --subset S       full (every NodeConformance spec) or ci (pods, probes,
#                    lifecycle hooks, exec, logs, security context, sysctls,
#                    downward API: a few minutes). Default: full.
#   --runtime R      crid (default) or containerd (Debian's containerd 1.6,
#                    installed with apt when missing; for reference)
#   --crid PATH      crid binary, with crid-monitor and crid-nsexec beside it
#                    (default: bin/crid, else `make build`)
#   --runc PATH      OCI runtime of both handlers (default /usr/local/sbin/runc
#                    from `make runc`, else runc in $PATH)
#   --out DIR        reports and logs (default: _output/node-e2e/<runtime>-<subset>)
#   --nodes N        parallel ginkgo processes (default: 8 for full, 4 for ci)
#   --focus REGEX    ginkgo --focus instead of the subset's
#   --skip REGEX     added to the skip list
#   --keep           keep the working directory afterwards
# Environment: WORK (default /tmp/crid-node-e2e), NODE_E2E_CACHE (binary
# cache, default /var/cache/crid-node-e2e), NODE_E2E_TIMEOUT (ginkgo suite
# timeout, default 2h), WORK_LOCK_WAIT (seconds to wait for another run on
# WORK, default 7200).
#
# It builds (or takes from the cache) kubelet, e2e_node.test and ginkgo
# (build.sh), starts the node e2e image registry on a free loopback port and
# the runtime with its own root, state and socket under $WORK, then runs
# ginkgo: e2e_node.test runs etcd, kube-apiserver and a namespace controller
# in-process and starts kubelet beside itself. kubelet is kept off
# systemd-run (systemd-run is hidden from its PATH: PID 1 here is not
# systemd) and does not move the machine's processes into a system cgroup
# (--system-cgroups empty). Writes junit.xml, the runtime's, kubelet's and
# ginkgo's logs and summary.txt ("N passed, M failed, K skipped") to the
# output dir. On exit it stops everything it started and removes what was
# left: pods, runc containers, mounts under $WORK and /var/lib/kubelet, the
# CNI bridge and its iptables rules, kubelet's cgroups. Needs root; one run
# at a time per machine (kubelet and the apiserver use fixed ports): a second
# run waits, and a killed run's leftovers are removed by the next.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

subset=full
runtime=crid
crid=""
runc=""
out=""
nodes=""
focus=""
extra_skip=""
keep=false
while [[ $# -gt 0 ]]; do
	case $1 in
	--subset) subset=$2; shift 2 ;;
	--runtime) runtime=$2; shift 2 ;;
	--crid) crid=$2; shift 2 ;;
	--runc) runc=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--nodes) nodes=$2; shift 2 ;;
	--focus) focus=$2; shift 2 ;;
	--skip) extra_skip=$2; shift 2 ;;
	--keep) keep=true; shift ;;
	-h | --help) sed -n '2,39p' "${BASH_SOURCE[0]}"; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

log() { echo "node-e2e: $(date +%T) $*" >&2; }
die() { log "error: $*"; exit 1; }

case $subset in
full) nodes=${nodes:-8} ;;
ci) nodes=${nodes:-4} ;;
*) die "--subset $subset: want full or ci" ;;
esac
case $runtime in crid | containerd) ;; *) die "--runtime $runtime: want crid or containerd" ;; esac

command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
export PATH=$PATH:/usr/sbin:/sbin
WORK=${WORK:-/tmp/crid-node-e2e}
NODE_E2E_TIMEOUT=${NODE_E2E_TIMEOUT:-2h}
out=${out:-$repo/_output/node-e2e/$runtime-$subset}
BRIDGE=cridne2e0
NETNAME=crid-node-e2e
SUBNET=10.235.0.0/16
KUBELET_ROOT=/var/lib/kubelet # fixed by e2e_node (services.KubeletRootDirectory)
# Ports kubelet (healthz, server, read-only) and the in-process apiserver
# take; e2e_node fixes them.
FIXED_PORTS=(10248 10250 10255 6443)

# What every Kubernetes runtime job skips, and features that are off by
# default (their specs carry [Feature:OffByDefault] or [Alpha]).
skip='\[Flaky\]|\[Slow\]|\[Serial\]|\[Disruptive\]|\[Feature:OffByDefault\]|\[Alpha\]'
[[ -n $extra_skip ]] && skip="$skip|$extra_skip"
if [[ -z $focus ]]; then
	case $subset in
	full) focus='\[NodeConformance\]' ;;
	# The CI subset: NodeConformance specs (the label) of the areas that
	# exercise the runtime most (describe blocks of test/e2e/common/node and
	# test/e2e_node).
	ci) focus='\[sig-node\] (Pods|Probing container|Container Lifecycle Hook|Lifecycle Sleep Hook|Container Runtime|Security Context|Sysctls|Downward API|Variable Expansion|Kubelet when scheduling|ContainerLogPath) ' ;;
	esac
fi
# The probe specs that watch a container for minutes to see it is *not*
# restarted test kubelet's timing more than the runtime (4 minutes each):
# the full run keeps them, the CI subset does not.
[[ $subset == ci ]] && skip="$skip|should \\*not\\* be restarted|monotonically increasing restart count"
label_filter=NodeConformance

[[ $(id -u) == 0 ]] || die "must run as root"
case $WORK in /tmp/?* | /var/tmp/?* | /run/?*) ;; *) die "WORK=$WORK: use a private directory under /tmp, /var/tmp or /run" ;; esac
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/{junit.xml,ginkgo.log,summary.txt,results.md,kubelet.log,crid.log,containerd.log,registry.log,cleanup.log,runtime-version.txt}
bindir="$WORK/bin"
sock=""
registry_pid=""
runtime_pid=""
ginkgo_pid=""
owned=false # this run holds $WORK (and so may sweep it)

# ---- cleanup -----------------------------------------------------------
# shellcheck source=../lib/sweep.sh
. "$here/../lib/sweep.sh"

# rm_cgroup_tree DIR: remove a cgroup and its children, deepest first
# (kubelet's /kubepods hierarchy, once its processes are gone).
rm_cgroup_tree() {
	[[ -d $1 ]] || return 0
	find "$1" -depth -type d -exec rmdir {} + 2>/dev/null || true
	[[ -d $1 ]] && log "cgroup $1 could not be removed (processes left?)"
	return 0
}

# sweep: what the runtime could not clean up, or a killed earlier run left:
# processes naming $WORK, runc containers, mounts under $WORK and
# kubelet's root, kubelet's cgroups, the bridge and our iptables rules.
sweep() {
	sweep_procs "$WORK"
	sweep_runc "$runc" "$WORK"/state/runtime/* "$WORK"/containerd/runc/*
	sweep_mounts "$WORK" "$KUBELET_ROOT"
	if [[ -d $KUBELET_ROOT ]] && ! awk -v k="$KUBELET_ROOT" 'index($5, k) == 1 {f=1} END {exit !f}' /proc/self/mountinfo; then
		rm -rf "$KUBELET_ROOT"
	fi
	# kubelet's cgroups: the QoS hierarchy under cgroupRoot / and its own.
	local c
	for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubelet /sys/fs/cgroup/unified/kubepods /sys/fs/cgroup/unified/kubelet; do
		rm_cgroup_tree "$c"
	done
	sweep_cni "$BRIDGE" "$NETNAME"
}

cleanup() {
	local rc=$?
	set +e
	stop_pid "$ginkgo_pid" ginkgo 30
	# kubelet and e2e_node.test outlive an interrupted ginkgo.
	local pid exe
	for pid in $(pids_of_exe "$bindir/kubelet" "$bindir/e2e_node.test" "$bindir/ginkgo"); do
		exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue # gone meanwhile
		log "stopping leftover ${exe##*/} (pid $pid)"
		stop_pid "$pid" "${exe##*/}" 10
	done
	if [[ -n $runtime_pid ]] && kill -0 "$runtime_pid" 2>/dev/null && [[ -S $sock ]]; then
		# Let the runtime tear pods down itself (CNI DEL, runc delete, unmounts).
		log "removing pods left in $runtime"
		timeout 180 "$crictl" --runtime-endpoint "unix://$sock" rmp --all --force >>"$out/cleanup.log" 2>&1
	fi
	stop_pid "$runtime_pid" "$runtime" 30
	stop_pid "$registry_pid" registry 10
	if [[ $runtime == containerd ]]; then
		# Shims outlive containerd; end the ones serving our socket.
		for p in /proc/[0-9]*; do
			if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "-address $sock "; then
				kill -KILL "${p#/proc/}" 2>/dev/null
			fi
		done
	fi

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

if [[ -z $runc ]]; then
	if [[ -x /usr/local/sbin/runc ]]; then runc=/usr/local/sbin/runc; else runc=$(command -v runc) || die "no runc: run make runc"; fi
fi

# One run at a time per WORK (ports, bridge and kubelet's root are fixed);
# a second run waits for the first. Once this run owns $WORK, anything
# there is what a killed run left: remove it (its kubelet, runtime, pods,
# mounts and kubelet root) and go on.
claim_work "$WORK" "${WORK_LOCK_WAIT:-7200}" || die "$WORK is still in use by another run after ${WORK_LOCK_WAIT:-7200}s"
if [[ -e $WORK ]]; then
	log "$WORK was left by a run that did not finish; removing what it left"
	owned=true
	sweep
	rm -rf "$WORK"
elif [[ -e $KUBELET_ROOT ]]; then
	release_work "$WORK"
	die "$KUBELET_ROOT exists: another kubelet uses this machine (or a leftover: unmount and remove it)"
fi
owned=true
for p in "${FIXED_PORTS[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		die "port $p is in use (another kubelet or apiserver?); e2e_node needs it"
	fi
done
mkdir -p "$bindir" "$WORK/cni/net.d" "$WORK/cni/ipam" "$WORK/e2e"

# ---- binaries ------------------------------------------------------------
start=$SECONDS
k8sbin=$("$here/build.sh")
log "kubelet, e2e_node.test, ginkgo, agnhost ready in $((SECONDS - start))s ($k8sbin)"
# e2e_node.test starts the kubelet found next to itself; copies keep the
# cache read-only and let cleanup find this run's processes by path.
cp "$k8sbin/kubelet" "$k8sbin/e2e_node.test" "$k8sbin/ginkgo" "$bindir/"
"$repo/test/conformance/build-tools.sh" "$repo/bin/cri-tools" >&2
# The agnhost image carries this machine's OpenBSD nc (test/images).
if [[ ! -x /bin/nc.openbsd ]]; then
	log "installing netcat-openbsd (Debian) for the agnhost image"
	apt-get update -qq && apt-get install -y -qq --no-upgrade netcat-openbsd >&2
fi
crictl=$repo/bin/cri-tools/crictl
(cd "$repo" && go build -o "$bindir/node-e2e-registry" ./test/node-e2e/registry)
if [[ $runtime == crid ]]; then
	if [[ -z $crid ]]; then
		if [[ -x $repo/bin/crid ]]; then
			crid=$repo/bin/crid
		else
			log "building crid (make build)"
			make -C "$repo" build >&2
			crid=$repo/bin/crid
		fi
	fi
	[[ -x $crid ]] || die "crid binary $crid not found"
	crid=$(cd "$(dirname "$crid")" && pwd)/$(basename "$crid")
elif ! command -v containerd >/dev/null; then
	log "installing containerd (Debian)"
	apt-get update -qq && apt-get install -y -qq --no-upgrade containerd >&2
fi

# ---- registry ------------------------------------------------------------
log "starting the node e2e registry"
"$bindir/node-e2e-registry" --addr 127.0.0.1:0 --agnhost-dir "$k8sbin" --ready-file "$WORK/registry.ready" >"$out/registry.log" 2>&1 &
registry_pid=$!
for ((i = 0; i < 1800; i++)); do
	[[ -f $WORK/registry.ready ]] && break
	kill -0 "$registry_pid" 2>/dev/null || die "registry exited; see $out/registry.log"
	sleep 0.1
done
[[ -f $WORK/registry.ready ]] || die "registry not ready after 180s"
REGISTRY=$(head -n1 "$WORK/registry.ready")
log "registry serves on $REGISTRY"

# ---- runtime -------------------------------------------------------------
sed -e "s|@WORK@|$WORK|g" -e "s|@BRIDGE@|$BRIDGE|g" -e "s|@NETNAME@|$NETNAME|g" -e "s|@SUBNET@|$SUBNET|g" \
	"$here/cni.conflist.tmpl" >"$WORK/cni/net.d/10-$NETNAME.conflist"

start_crid() {
	sock=$WORK/state/crid.sock
	sed -e "s|@WORK@|$WORK|g" -e "s|@REGISTRY@|$REGISTRY|g" -e "s|@RUNC@|$runc|g" \
		"$here/crid-config.toml.tmpl" >"$WORK/crid.toml"
	cp "$WORK/crid.toml" "$out/crid.toml"
	log "starting crid ($crid)"
	"$crid" --config "$WORK/crid.toml" --log-level info >"$out/crid.log" 2>&1 &
	runtime_pid=$!
}

# containerd 1.6 cannot put a path prefix in a CRI mirror endpoint; a
# hosts.toml host with override_path = true can. server points at the
# registry too, so a pull never reaches the real registry.
start_containerd() {
	local c=$WORK/containerd host
	sock=$c/containerd.sock
	for host in registry.k8s.io invalid.registry.k8s.io gcr.io docker.io; do
		mkdir -p "$c/certs.d/$host"
		cat >"$c/certs.d/$host/hosts.toml" <<-TOML
			server = "http://$REGISTRY/v2/$host"
			[host."http://$REGISTRY/v2/$host"]
			  capabilities = ["pull", "resolve"]
			  override_path = true
		TOML
	done
	cat >"$c/config.toml" <<-TOML
		version = 2
		root = "$c/root"
		state = "$c/state"
		[grpc]
		  address = "$sock"
		[plugins."io.containerd.internal.v1.opt"]
		  path = "$c/opt"
		[plugins."io.containerd.grpc.v1.cri"]
		  sandbox_image = "registry.k8s.io/pause:3.10.2"
		  restrict_oom_score_adj = true
		  stream_server_address = "127.0.0.1"
		  stream_server_port = "0"
		  enable_unprivileged_ports = true
		  enable_unprivileged_icmp = true
		  [plugins."io.containerd.grpc.v1.cri".containerd]
		    snapshotter = "overlayfs"
		    default_runtime_name = "runc"
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
		        BinaryName = "$runc"
		        Root = "$c/runc/runc"
		        SystemdCgroup = false
		    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.test-handler]
		      runtime_type = "io.containerd.runc.v2"
		      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.test-handler.options]
		        BinaryName = "$runc"
		        Root = "$c/runc/test-handler"
		        SystemdCgroup = false
		  [plugins."io.containerd.grpc.v1.cri".cni]
		    bin_dir = "/usr/lib/cni"
		    conf_dir = "$WORK/cni/net.d"
		  [plugins."io.containerd.grpc.v1.cri".registry]
		    config_path = "$c/certs.d"
	TOML
	cp "$c/config.toml" "$out/containerd.toml"
	log "starting containerd $(containerd --version | awk '{print $3}')"
	containerd --config "$c/config.toml" --log-level info >"$out/containerd.log" 2>&1 &
	runtime_pid=$!
}

"start_$runtime"
for ((i = 0; i < 600; i++)); do
	if [[ -S $sock ]] && "$crictl" --runtime-endpoint "unix://$sock" --timeout 2s version >/dev/null 2>&1; then
		break
	fi
	kill -0 "$runtime_pid" 2>/dev/null || die "$runtime exited; see $out/$runtime.log"
	sleep 0.1
done
"$crictl" --runtime-endpoint "unix://$sock" version >"$out/runtime-version.txt" 2>&1 ||
	die "$runtime does not answer on $sock after 60s; see $out/$runtime.log"
log "runtime is up: $(tr '\n' ' ' <"$out/runtime-version.txt")"

# ---- kubelet environment ---------------------------------------------------
# e2e_node runs kubelet under systemd-run whenever systemd-run is in PATH,
# which fails where PID 1 is not systemd: give the suite a PATH whose
# /usr/bin copy lacks it (symlinks to everything else).
if [[ ! -d /run/systemd/system ]]; then
	mkdir -p "$WORK/usrbin"
	for f in /usr/bin/*; do
		[[ ${f##*/} == systemd-run ]] || ln -s "$f" "$WORK/usrbin/"
	done
	e2e_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:$WORK/usrbin
else
	e2e_path=$PATH
fi
sed -e "s|@SUBNET@|$SUBNET|g" "$here/kubelet-config.yaml" >"$WORK/kubelet-config.yaml"
cp "$WORK/kubelet-config.yaml" "$out/kubelet-config.yaml"

# ---- ginkgo --------------------------------------------------------------
node=$(hostname | tr '[:upper:]' '[:lower:]')
args=(
	"--nodes=$nodes"
	"--focus=$focus"
	"--skip=$skip"
	"--label-filter=$label_filter"
	"--timeout=$NODE_E2E_TIMEOUT"
	--no-color
	--junit-report=junit.xml
	"--output-dir=$out"
	"$bindir/e2e_node.test"
	--
	"--container-runtime-endpoint=unix://$sock"
	"--image-service-endpoint=unix://$sock"
	--prepull-images=false
	"--kubelet-config-file=$WORK/kubelet-config.yaml"
	# The e2e services set systemCgroups /system, which makes kubelet move
	# every process of the machine's root cgroup there; keep them put.
	# kubelet's cgroup driver must agree with the runtime's: cgroupfs here.
	"--kubelet-flags=--system-cgroups= --cluster-domain=cluster.local"
	--dns-domain=cluster.local
	"--node-name=$node"
	"--report-dir=$out"
	--v=4
)
log "running ginkgo: subset $subset, $nodes nodes, runtime $runtime (log: $out/ginkgo.log)"
log "focus: $focus"
log "skip: $skip"
start=$SECONDS
rc=0
(cd "$WORK/e2e" && exec env PATH="$e2e_path" KUBE_TEST_REPO_LIST= "$bindir/ginkgo" "${args[@]}") >"$out/ginkgo.log" 2>&1 &
ginkgo_pid=$!
wait "$ginkgo_pid" || rc=$?
ginkgo_pid=""
elapsed=$((SECONDS - start))
log "ginkgo finished in ${elapsed}s (exit $rc)"
"$crictl" --runtime-endpoint "unix://$sock" --timeout 5s version >/dev/null 2>&1 ||
	log "warning: $runtime does not answer after the run; see $out/$runtime.log"

# ---- summary -------------------------------------------------------------
[[ -f $out/junit.xml ]] || die "no junit report; see $out/ginkgo.log"
sumargs=(--out "$out/summary.txt" --markdown "$out/results.md" --reasons "$here/reasons.tsv")
# The CI subset fails when a spec that passed before stops passing.
[[ $subset == ci ]] && sumargs+=(--expected "$here/expected-pass-ci.txt")
src=0
(cd "$repo" && go run ./test/conformance/junitsum "${sumargs[@]}" "$runtime=$out/junit.xml") >&2 || src=$?
# The report lists every spec of the suite; those the focus and skip
# filtered out are "skipped" too. Count the selected ones: N passed, M
# failed, K skipped (by the spec itself, e.g. a missing host feature).
selected=$(grep -ao 'Will run [0-9]* of [0-9]* specs' "$out/ginkgo.log" | head -n1 | awk '{print $3}')
specs=$(grep -o '<testcase name="\[It\][^>]*status="[a-z]*"' "$out/junit.xml" | sed 's/.*status="//; s/"$//')
npassed=$(grep -c '^passed$' <<<"$specs" || true)
nfailed=$(grep -vc -e '^passed$' -e '^skipped$' -e '^pending$' <<<"$specs" || true)
{
	echo "$runtime $subset: ${npassed} passed, ${nfailed} failed, $((${selected:-0} - npassed - nfailed)) skipped (of ${selected:-?} selected specs)"
	echo "took ${elapsed}s with $nodes ginkgo nodes"
} | tee -a "$out/summary.txt" >&2
# Failures of specs outside the expected list are reported but tolerated
# in the CI subset; the full run reports ginkgo's verdict.
if [[ $subset == ci ]]; then exit "$src"; fi
exit "$rc"

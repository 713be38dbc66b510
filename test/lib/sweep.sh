# shellcheck shell=bash
# test/lib/sweep.sh: what the suite runners (test/conformance/run.sh,
# test/node-e2e/run.sh) share to own a work directory on a machine that
# other runs use too, and to remove everything a runtime under test left
# behind, also when the previous run was killed half-way (CI machines are
# reused; a run killed by a timeout leaves its crid, pods and mounts).
#
# Source it after defining log (message) and with $out set (cleanup.log
# collects the commands' output).

# stop_pid PID NAME TIMEOUT: TERM, then KILL after TIMEOUT seconds.
stop_pid() {
	local pid=$1 name=$2 t=$3 i
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
	log "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < t * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	log "$name did not stop in ${t}s; killing"
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# pids_of_exe PATH...: processes running one of these binaries.
pids_of_exe() {
	local p exe want
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		for want in "$@"; do
			[[ $exe == "$want" ]] && echo "${p#/proc/}"
		done
	done
	return 0
}

# pids_naming DIR: processes whose binary lives under DIR or whose command
# line names a path under it (a killed run's crid, registry, kubelet and
# monitors all do), except this shell and its ancestors.
pids_naming() {
	local dir=$1 p pid exe keep=" " a=$$
	while [[ -n $a && $a != 0 && $a != 1 ]]; do
		keep+="$a "
		a=$(awk '/^PPid:/ {print $2}' "/proc/$a/status" 2>/dev/null)
	done
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		[[ $keep == *" $pid "* ]] && continue
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		if [[ $exe == "$dir"/* ]] || { tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | grep -q -F -- "$dir/"; then
			echo "$pid"
		fi
	done
	return 0
}

# sweep_procs DIR: kill (SIGKILL) the processes pids_naming DIR finds.
sweep_procs() {
	local pid cmd
	for pid in $(pids_naming "$1"); do
		cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | cut -c1-120)
		if kill -KILL "$pid" 2>/dev/null; then
			log "leftover process $pid ($cmd): killed"
		else
			log "leftover process $pid ($cmd): gone before it was killed"
		fi
	done
	return 0
}

# sweep_runc RUNC ROOT...: force-delete the containers of these runc roots.
sweep_runc() {
	local runc=$1 root id
	shift
	for root in "$@"; do
		[[ -d $root ]] || continue
		for id in $("$runc" --root "$root" list -q 2>/dev/null); do
			log "leftover runc container $id"
			"$runc" --root "$root" delete --force "$id" >>"$out/cleanup.log" 2>&1
		done
	done
	return 0
}

# sweep_mounts DIR...: lazily unmount everything at or under these, deepest
# first, saying what each mount was and whether it went. crid's namespace
# pin directories (<state>/netns, <state>/nspins) are each bind-mounted onto
# themselves on purpose, and crid leaves them mounted when it stops so that
# the pins in them survive its restarts: they are said to be that, not a
# leak. A pinned namespace (nsfs) or anything else still mounted is.
sweep_mounts() {
	local m fstype what
	while read -r m fstype; do
		[[ -n $m ]] || continue
		if [[ $fstype == nsfs ]]; then
			what="pinned namespace $m left mounted"
		elif [[ $m == */netns || $m == */nspins ]]; then
			what="crid's namespace pin directory $m (bound onto itself; crid keeps it mounted across its restarts)"
		else
			what="mount $m ($fstype) left under the work dir"
		fi
		if umount -l "$m" >>"$out/cleanup.log" 2>&1; then
			log "$what: unmounted"
		else
			log "$what: umount -l failed (see $out/cleanup.log)"
		fi
	done < <(awk -v dirs="$*" 'BEGIN {n = split(dirs, d, " ")}
		{
			# mountinfo: the filesystem type follows the "-" that ends the
			# optional fields.
			for (t = 7; t < NF && $t != "-"; t++) {}
			for (i = 1; i <= n; i++) if ($5 == d[i] || index($5, d[i] "/") == 1) {print $5, $(t + 1); next}
		}' /proc/self/mountinfo | sort -r)
	return 0
}

# sweep_cni BRIDGE NETNAME: the test network's bridge and the iptables rules
# (and per-pod chains) the CNI plugins made for it.
sweep_cni() {
	local bridge=$1 netname=$2 table rule chain chains
	if ip link show "$bridge" >/dev/null 2>&1; then
		ip link delete "$bridge" >>"$out/cleanup.log" 2>&1
	fi
	for table in nat filter; do
		chains=()
		while read -r rule; do
			[[ -n $rule ]] || continue
			log "leftover iptables rule: $rule"
			eval "iptables -w -t $table -D ${rule#-A }" >>"$out/cleanup.log" 2>&1
			# Per-pod chains the rules jumped to are now unreferenced.
			[[ $rule =~ -j\ (CNI-[A-Za-z0-9-]+) ]] && chains+=("${BASH_REMATCH[1]}")
		done < <(iptables-save -t "$table" 2>/dev/null | grep -e "^-A .*$netname" || true)
		for chain in $(printf '%s\n' "${chains[@]}" | sort -u); do
			case $chain in CNI-HOSTPORT-* | CNI-FORWARD | CNI-ADMIN) continue ;; esac
			iptables -w -t "$table" -F "$chain" >>"$out/cleanup.log" 2>&1 &&
				iptables -w -t "$table" -X "$chain" >>"$out/cleanup.log" 2>&1 &&
				log "removed leftover iptables chain $table/$chain"
		done
	done
	return 0
}

# proc_start PID: the process's start time (clock ticks since boot), which
# tells a live owner from a recycled pid.
proc_start() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) } # the command name may hold spaces and parentheses
	awk '{print $20}' <<<"$stat"
}

# claim_work WORK WAIT: make this shell the owner of WORK (WORK.owner names
# its pid and start time), waiting up to WAIT seconds while another live run
# owns it. Whatever is at WORK once the claim succeeds was left by a run
# that was killed, and the caller sweeps it. The owner is a file, not a lock
# held on an open fd, because the crid and registry of a killed run would
# inherit that fd and keep the lock forever.
claim_work() {
	local work=$1 wait=$2 deadline=$((SECONDS + $2)) told=false
	while :; do
		# WORK.lock only serialises the check-and-write; its fd is closed
		# at the end of the group, before any child is started.
		if { flock -w 60 9 && work_owner_alive "$work"; } 9>"$work.lock"; then
			((SECONDS < deadline)) || return 1
			[[ $told == true ]] || log "another run (pid $(cut -d' ' -f1 "$work.owner")) owns $work; waiting up to ${wait}s for it"
			told=true
			sleep 5
			continue
		fi
		{ flock -w 60 9 && work_owner_alive "$work" || echo "$$ $(proc_start $$)" >"$work.owner"; } 9>"$work.lock"
		[[ $(cat "$work.owner") == "$$ $(proc_start $$)" ]] && return 0
	done
}

# work_owner_alive WORK: whether the run named in WORK.owner still runs.
work_owner_alive() {
	local pid start
	read -r pid start 2>/dev/null <"$1.owner" || return 1
	[[ -n $pid && $pid != "$$" && $(proc_start "$pid") == "$start" ]]
}

# release_work WORK: give up ownership (only if it is ours).
release_work() {
	[[ $(cat "$1.owner" 2>/dev/null) == "$$ $(proc_start $$)" ]] && rm -f "$1.owner"
	return 0
}

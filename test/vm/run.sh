#!/usr/bin/env bash
# Run one command as root inside a Debian 12 VM: a real node with systemd as
# PID 1, pure cgroup v2 and AppArmor, which this host (cgroup v1 hybrid, no
# systemd, no AppArmor) is not. See docs/vm.md.
#
#   test/vm/run.sh [--timeout 30m] [--mem 4G] [--cpus 2] [--out DIR]
#                  [--accel auto|kvm|tcg] [--rebuild] -- COMMAND [ARG...]
#
# The image is built offline from Debian's archive (debootstrap), cached in
# /var/cache/crid-vm under a hash of the package list and of the functions
# that build it, and booted with qemu. The checkout is mounted read-only at
# /src in the guest (the command runs there); the output dir is mounted
# read-write at /mnt/ci and carries crid's binaries in and the command's
# output, exit status and any files it writes to $CRID_VM_OUT out. The disk
# is a throwaway snapshot: every run starts from the same clean node.
#
# Exit status: the command's, or 125 if the VM could not run it (no boot,
# timeout, missing tools) — never 0 unless the command ran and returned 0.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/test/vm
CACHE=${CRID_VM_CACHE:-/var/cache/crid-vm}
MIRROR=${CRID_VM_MIRROR:-http://deb.debian.org/debian}
TIMEOUT=30m
MEM=4G
CPUS=2
OUT=$REPO/_output/vm
ACCEL=${CRID_VM_ACCEL:-auto}
REBUILD=0
# How long a KVM boot may take before we call KVM broken and use TCG. A
# working KVM reaches the runner in ~5 s; under this host's PVM-backed
# /dev/kvm an unmodified kernel hangs instead of failing.
KVM_BOOT_LIMIT=${CRID_VM_KVM_BOOT_LIMIT:-60}

# What the node has. The first line is what a Kubernetes node needs; the
# rest is what crid's tests need inside (test/images builds its images
# from the node's busybox, ipcs, pgrep and nginx and compiles pause with
# gcc; e2e's "runc-b" handler is Debian's runc from PATH; hostile_test
# uses setpriv and gcc -static).
GUEST_PACKAGES=(
	systemd systemd-sysv udev dbus linux-image-amd64 initramfs-tools kmod
	apparmor criu containernetworking-plugins iptables ca-certificates
	iproute2 procps util-linux e2fsprogs runc
	busybox nginx-light gcc libc6-dev
)
DISK_SIZE=8G

# A step that fails under -e says where, and counts as "could not run".
trap 'echo "test/vm/run.sh: failed at line $LINENO" >&2; exit 125' ERR

die() {
	echo "test/vm/run.sh: $*" >&2
	exit 125
}

usage() {
	sed -n '6,7p' "${BASH_SOURCE[0]}" | sed 's/^# *//' >&2
	exit 125
}

while [ $# -gt 0 ]; do
	case $1 in
	--timeout) TIMEOUT=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--cpus) CPUS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--accel) ACCEL=$2; shift 2 ;;
	--rebuild) REBUILD=1; shift ;;
	--) shift; break ;;
	-h | --help) usage ;;
	*) usage ;;
	esac
done
[ $# -gt 0 ] || usage
case $ACCEL in auto | kvm | tcg) ;; *) die "--accel must be auto, kvm or tcg" ;; esac
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, and the guest's files keep their owners)"

# ensure_tools installs what is missing from Debian's archive, as CI does.
ensure_tools() {
	local missing=()
	command -v debootstrap >/dev/null || missing+=(debootstrap)
	command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
	command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
	command -v flock >/dev/null || missing+=(util-linux)
	[ ${#missing[@]} -eq 0 ] && return
	echo "vm: installing ${missing[*]}" >&2
	# --no-install-recommends: qemu-system-x86 recommends a desktop's worth.
	if ! apt-get install -y --no-upgrade --no-install-recommends "${missing[@]}" >&2; then
		apt-get update >&2
		apt-get install -y --no-upgrade --no-install-recommends "${missing[@]}" >&2 ||
			die "could not install ${missing[*]}"
	fi
}

# --- build section: everything from here to "end of build section" is
# hashed into the cache key, so changing how the image is made rebuilds it.

# configure_guest sets up the debootstrapped tree at $1 as a node that runs
# the ci share's guest.sh at boot.
configure_guest() {
	local root=$1
	echo crid-vm >"$root/etc/hostname"
	printf '127.0.0.1 localhost\n127.0.1.1 crid-vm\n' >"$root/etc/hosts"
	printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$root/etc/fstab"
	# Root without a password: a console login for whoever debugs a boot.
	chroot "$root" passwd -d root >/dev/null
	# 9p is loaded before the runner mounts the shares.
	printf '9p\n9pnet_virtio\n' >"$root/etc/modules-load.d/crid-vm.conf"
	# DHCP on qemu's user network (the host's loopback is 10.0.2.2).
	mkdir -p "$root/etc/systemd/network"
	printf '[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n' >"$root/etc/systemd/network/10-ci.network"
	# The runner: mounts the shares and hands over to guest.sh, which the
	# host copies into the share on every run (so changing it needs no
	# rebuild). Not ordered after multi-user.target (that target would order
	# itself after this unit: a cycle); Type=exec so boot completes while the
	# command runs. Whatever happens, the VM powers off afterwards.
	cat >"$root/etc/systemd/system/crid-vm-run.service" <<'EOF'
[Unit]
Description=crid VM: run the command in the ci share, then power off
Wants=network-online.target
After=network-online.target systemd-modules-load.service

[Service]
Type=exec
ExecStartPre=/bin/mkdir -p /mnt/ci /src
ExecStartPre=/bin/mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 ci /mnt/ci
ExecStartPre=/bin/mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,ro repo /src
ExecStart=/bin/bash /mnt/ci/guest.sh
ExecStopPost=/bin/systemctl poweroff --force
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
	chroot "$root" systemctl enable crid-vm-run.service systemd-networkd.service >/dev/null 2>&1
	# No getty fighting the runner for the serial console's output.
	chroot "$root" systemctl mask serial-getty@ttyS0.service >/dev/null 2>&1
	# Smaller image: the package cache is not needed at run time.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
}

# build_image builds rootfs.img, vmlinuz and initrd.img into $1.
build_image() {
	local dir=$1 root=$1/root
	local include
	include=$(IFS=,; echo "${GUEST_PACKAGES[*]}")
	debootstrap --variant=minbase --include="$include" bookworm "$root" "$MIRROR"
	configure_guest "$root"
	# Debian's initrd (MODULES=most) has virtio_blk and ext4.
	cp "$root"/boot/vmlinuz-* "$dir/vmlinuz"
	cp "$root"/boot/initrd.img-* "$dir/initrd.img"
	# mkfs.ext4 -d copies the tree with owners, modes and xattrs: no loop
	# mount, so it works where loop devices do not.
	mkfs.ext4 -q -F -L crid-vm -d "$root" "$dir/rootfs.img" "$DISK_SIZE"
}

# --- end of build section

# unmount_under lazily unmounts whatever debootstrap left mounted under $1
# (proc, sys) when it failed, so that removing the tree cannot reach the host's.
unmount_under() {
	local m
	findmnt -rn -o TARGET | { grep -F "$1/" || true; } | sort -r | while read -r m; do
		umount -l "$m" || true
	done
}

cache_key() {
	{
		printf '%s\n' "${GUEST_PACKAGES[@]}" "$DISK_SIZE" "$MIRROR"
		declare -f configure_guest build_image
	} | sha256sum | cut -c1-16
}

# ensure_image leaves a built image in $IMAGE_DIR, building it if needed.
ensure_image() {
	IMAGE_DIR=$CACHE/$(cache_key)
	mkdir -p "$CACHE"
	# One build at a time per machine; concurrent runs wait for it.
	exec 9>"$CACHE/lock"
	flock 9
	if [ "$REBUILD" = 1 ]; then rm -rf "$IMAGE_DIR"; fi
	if [ -f "$IMAGE_DIR/complete" ]; then
		echo "vm: image $IMAGE_DIR (cached)"
		flock -u 9
		return
	fi
	local tmp start
	tmp=$(mktemp -d "$CACHE/build.XXXXXX")
	start=$(date +%s)
	echo "vm: building the image in $tmp (debootstrap from $MIRROR; log: $tmp/build.log)"
	# In a subshell with -e of its own: under "if !" or "||" bash would
	# ignore -e inside build_image and carry on past a failed step.
	local rc=0
	set +e
	(set -e; build_image "$tmp") >"$tmp/build.log" 2>&1
	rc=$?
	set -e
	if [ "$rc" != 0 ]; then
		unmount_under "$tmp"
		tail -n 40 "$tmp/build.log" >&2
		rm -rf --one-file-system "$tmp/root"
		die "image build failed; log: $tmp/build.log"
	fi
	unmount_under "$tmp"
	rm -rf --one-file-system "$tmp/root"
	echo "$(($(date +%s) - start))" >"$tmp/build-seconds"
	rm -rf "$IMAGE_DIR"
	mv "$tmp" "$IMAGE_DIR"
	touch "$IMAGE_DIR/complete"
	# Older images (other keys) are dead weight: keep only this one.
	find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -path "$IMAGE_DIR" -name '????????????????' -exec rm -rf {} +
	echo "vm: image built in $(cat "$IMAGE_DIR/build-seconds") s"
	flock -u 9
}

# prepare_out fills the share: crid's binaries, runc, crictl, guest.sh and
# the command. It only ever empties a directory it made itself.
prepare_out() {
	if [ -e "$OUT" ] && [ ! -f "$OUT/.crid-vm-out" ] && [ -n "$(ls -A "$OUT")" ]; then
		die "$OUT exists and is not a test/vm output dir; not emptying it"
	fi
	rm -rf "$OUT"
	mkdir -p "$OUT/bin" "$OUT/results"
	touch "$OUT/.crid-vm-out"
	local f
	# Everything executable at the top of bin/: crid, crid-monitor,
	# crid-nsexec, test binaries (go test -c -o bin/e2e.test ...).
	for f in "$REPO"/bin/*; do
		if [ -f "$f" ] && [ -x "$f" ]; then cp "$f" "$OUT/bin/"; fi
	done
	# crid's default handler; the guest installs it as /usr/local/sbin/runc.
	if [ -x /usr/local/sbin/runc ]; then cp /usr/local/sbin/runc "$OUT/bin/runc"; fi
	# crictl: $CRICTL, else the checkout's (test/conformance/build-tools.sh).
	local crictl=${CRICTL:-$REPO/bin/cri-tools/crictl}
	if [ -x "$crictl" ]; then cp "$crictl" "$OUT/bin/crictl"; fi
	# critest beside it, for test/conformance/run.sh --prebuilt in the guest.
	if [ -x "$(dirname "$crictl")/critest" ]; then cp "$(dirname "$crictl")/critest" "$OUT/bin/critest"; fi
	cp "$HERE/guest.sh" "$OUT/guest.sh"
	{
		printf '# the command given to test/vm/run.sh\n'
		printf '%q ' "$@"
		printf '\n'
	} >"$OUT/cmd.sh"
	: >"$OUT/output.log"
}

QEMU_PID=
TAIL_PID=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; fi
	if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
		kill -KILL "$QEMU_PID" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

seconds() { # 30m, 90s, 2h, 600 -> seconds
	case $1 in
	*h) echo $((${1%h} * 3600)) ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}

# boot starts qemu with accelerator $1 in the background (QEMU_PID).
boot() {
	local accel_args
	if [ "$1" = kvm ]; then
		accel_args=(-accel kvm -cpu host)
	else
		# -cpu max gave random glibc assertion failures under TCG on qemu 7.2.
		accel_args=(-accel "tcg,thread=multi" -cpu Nehalem)
	fi
	rm -f "$OUT/booted" "$OUT/exit-status"
	: >"$OUT/console.log"
	# -nodefaults: no CD-ROM, parallel port or VGA for udev to probe and
	# load drivers for, seconds each under TCG.
	qemu-system-x86_64 -name crid-vm -nodefaults -m "$MEM" -smp "$CPUS" "${accel_args[@]}" \
		-display none -monitor none -serial "file:$OUT/console.log" -no-reboot \
		-kernel "$IMAGE_DIR/vmlinuz" -initrd "$IMAGE_DIR/initrd.img" \
		-append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1" \
		-drive "file=$IMAGE_DIR/rootfs.img,if=virtio,format=raw,snapshot=on" \
		-netdev user,id=net0 -device virtio-net-pci,netdev=net0 \
		-device virtio-rng-pci \
		-virtfs "local,path=$OUT,mount_tag=ci,security_model=none" \
		-virtfs "local,path=$REPO,mount_tag=repo,security_model=none,readonly=on" \
		>"$OUT/qemu.log" 2>&1 &
	QEMU_PID=$!
}

# wait_booted waits up to $1 s for the guest's runner to start; false if
# it did not (qemu is then killed).
wait_booted() {
	local i
	for ((i = 0; i < $1; i++)); do
		[ -f "$OUT/booted" ] && return 0
		kill -0 "$QEMU_PID" 2>/dev/null || return 1
		sleep 1
	done
	kill -KILL "$QEMU_PID" 2>/dev/null || true
	wait "$QEMU_PID" 2>/dev/null || true
	QEMU_PID=
	return 1
}

fail_console() {
	echo "--- last 60 lines of the console ($OUT/console.log):" >&2
	tail -n 60 "$OUT/console.log" >&2 || true
	if [ -s "$OUT/qemu.log" ]; then
		echo "--- qemu:" >&2
		cat "$OUT/qemu.log" >&2
	fi
	die "$*"
}

ensure_tools
ensure_image
prepare_out "$@"

limit=$(seconds "$TIMEOUT")
t0=$(date +%s)
deadline=$((t0 + limit))
# The KVM verdict is remembered per machine, kernel image and qemu, so a
# host where KVM hangs pays the probe once.
verdict_file=$CACHE/kvm-verdict-$(printf '%s %s %s' "$(uname -r)" "$(qemu-system-x86_64 --version | head -n1)" "$IMAGE_DIR" | sha256sum | cut -c1-16)
accel=$ACCEL
if [ "$accel" = auto ]; then
	if [ ! -w /dev/kvm ]; then
		accel=tcg
		echo "vm: /dev/kvm not usable: TCG"
	elif [ -f "$verdict_file" ]; then
		accel=$(cat "$verdict_file")
		echo "vm: $accel (remembered from an earlier boot attempt: $verdict_file)"
	else
		accel=probe
	fi
fi
if [ "$accel" = probe ]; then
	echo "vm: trying KVM (the runner must start within ${KVM_BOOT_LIMIT} s)"
	boot kvm
	if wait_booted "$KVM_BOOT_LIMIT"; then
		accel=kvm
		echo kvm >"$verdict_file"
	else
		echo "vm: KVM did not boot within ${KVM_BOOT_LIMIT} s (console: $(tail -c 300 "$OUT/console.log" | tr -cd '[:print:]\n' | tail -n 1)); using TCG"
		cp "$OUT/console.log" "$OUT/console-kvm.log"
		echo tcg >"$verdict_file"
		accel=tcg
		boot tcg
	fi
else
	boot "$accel"
fi
echo "vm: accelerator: $accel ($([ "$accel" = kvm ] && echo hardware || echo 'TCG, emulated: expect 10-30x slower'))"

# Stream the command's output while it runs.
tail -n +1 -F "$OUT/output.log" 2>/dev/null &
TAIL_PID=$!

while kill -0 "$QEMU_PID" 2>/dev/null; do
	# A guest kernel stuck for minutes will not come back (seen under TCG
	# on an overloaded host): fail now rather than at the timeout.
	if grep -qE 'soft lockup - CPU#[0-9]+ stuck for [0-9]{3,}s' "$OUT/console.log"; then
		kill -KILL "$QEMU_PID" 2>/dev/null || true
		wait "$QEMU_PID" 2>/dev/null || true
		QEMU_PID=
		fail_console "the guest kernel is stuck (soft lockup of 100 s or more); VM killed"
	fi
	if [ "$(date +%s)" -ge "$deadline" ]; then
		kill -KILL "$QEMU_PID" 2>/dev/null || true
		wait "$QEMU_PID" 2>/dev/null || true
		QEMU_PID=
		sleep 1
		if [ -f "$OUT/booted" ]; then
			die "timeout after $TIMEOUT: the command did not finish; VM killed (console: $OUT/console.log)"
		fi
		fail_console "timeout after $TIMEOUT before the guest's runner started"
	fi
	sleep 1
done
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=
sleep 1 # let tail print the last lines
kill "$TAIL_PID" 2>/dev/null || true
wait "$TAIL_PID" 2>/dev/null || true
TAIL_PID=

total=$(($(date +%s) - t0))
[ -f "$OUT/booted" ] || fail_console "the VM stopped before the guest's runner started"
[ -f "$OUT/exit-status" ] || fail_console "the VM stopped without the command's exit status"
status=$(cat "$OUT/exit-status")
echo "vm: accelerator $accel; boot $(cut -d' ' -f1 "$OUT/booted") s (guest uptime at runner start); command $(cat "$OUT/command-seconds" 2>/dev/null || echo ?) s; total $total s; exit status $status"
echo "vm: output in $OUT (output.log, console.log, results/)"
exit "$status"

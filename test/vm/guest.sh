#!/bin/bash
# Runs inside the VM at boot (crid-vm-run.service, as root), from the ci
# share that test/vm/run.sh filled: installs the binaries, runs cmd.sh in
# the checkout, writes its output and exit status to the share. The unit
# powers the VM off when this returns.
set -uo pipefail # not -e: the exit status must always be written

ci=/mnt/ci
# The host takes this file as "booted" and the uptime as the boot time.
cut -d' ' -f1 /proc/uptime >"$ci/booted.tmp" && mv "$ci/booted.tmp" "$ci/booted"
exec >>"$ci/output.log" 2>&1

echo "vm: guest $(uname -r), $(stat -fc %T /sys/fs/cgroup) at /sys/fs/cgroup," \
	"AppArmor $(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent)," \
	"PID 1 $(cat /proc/1/comm), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)" MiB"}' /proc/meminfo)"

# Binaries run from the local disk: faster than 9p, and a test that
# copies or re-executes them does not depend on the share.
mkdir -p /opt/crid/bin
cp -a "$ci/bin/." /opt/crid/bin/
if [ -x /opt/crid/bin/runc ]; then install -m 0755 /opt/crid/bin/runc /usr/local/sbin/runc; fi
export CRID_BIN=/opt/crid/bin
export PATH=/opt/crid/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export CRID_VM_OUT=$ci/results
export CRID_VM=1
if [ -x /opt/crid/bin/crictl ]; then export CRICTL=/opt/crid/bin/crictl; fi

cd /src || exit 1
start=$(date +%s)
bash "$ci/cmd.sh"
status=$?
echo $(($(date +%s) - start)) >"$ci/command-seconds"
echo "$status" >"$ci/exit-status.tmp" && mv "$ci/exit-status.tmp" "$ci/exit-status"
sync

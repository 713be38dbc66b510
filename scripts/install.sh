#!/usr/bin/env bash
# Installs crid on a fresh Debian 12 machine (as root) and starts it with
# its default config: embedded metadata store under /var/lib/crid, the
# default CNI bridge network, socket /run/crid/crid.sock.
# Where systemd is PID 1, crid runs as the service contrib/systemd/crid.service
# (installed to /etc/systemd/system, enabled and started); elsewhere (a
# container, a machine booted without systemd) it is started with nohup.
# The sandbox (pause) image is built from source and imported offline, so
# the node needs no registry to run pods of images it already has.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

./scripts/deps.sh
# The default runc handler's runtime: /usr/local/sbin/runc (not Debian's 1.1.5).
./scripts/build-runc.sh
make build

install -m 0755 bin/crid bin/crid-monitor bin/crid-nsexec /usr/local/bin/
install -d /etc/crid /etc/cni/net.d
# A config file is optional; write the commented defaults once for operators to edit.
[ -f /etc/crid/config.toml ] || /usr/local/bin/crid config default > /etc/crid/config.toml
/usr/local/bin/crid network init

# systemd is PID 1 (sd_booted's test, or the name of PID 1).
systemd_booted() { [ -d /run/systemd/system ] || [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; }
unit=/etc/systemd/system/crid.service

if systemd_booted && systemctl is-active --quiet crid.service; then
	echo "stopping crid.service"
	systemctl stop crid.service
fi
if [ -f /run/crid/crid.pid ] && kill -0 "$(cat /run/crid/crid.pid)" 2>/dev/null; then
	echo "stopping running crid"
	kill "$(cat /run/crid/crid.pid)"
	for _ in $(seq 50); do kill -0 "$(cat /run/crid/crid.pid)" 2>/dev/null || break; sleep 0.1; done
fi

# The default sandbox image, imported offline (the store is unlocked while crid is stopped).
sandbox_image=$(sed -n "s/^sandbox_image = [\"']\(.*\)[\"']\$/\1/p" /etc/crid/config.toml)
sandbox_image=${sandbox_image:-registry.k8s.io/pause:3.10}
bin/crid-testregistry archive --out /tmp/crid-pause.tar --ref "$sandbox_image"
/usr/local/bin/crid image import /tmp/crid-pause.tar
rm -f /tmp/crid-pause.tar

if systemd_booted; then
	install -m 0644 contrib/systemd/crid.service "$unit"
	systemctl daemon-reload
	# Type=notify: this returns once crid has recovered and serves the CRI.
	systemctl enable --now crid.service
	[ -S /run/crid/crid.sock ] || { echo "crid did not start; see journalctl -u crid" >&2; systemctl status --no-pager crid.service >&2 || true; exit 1; }
	echo "crid is running as crid.service (systemctl status crid), socket /run/crid/crid.sock, log: journalctl -u crid"
	exit 0
fi
mkdir -p /run/crid /var/log
nohup /usr/local/bin/crid >>/var/log/crid.log 2>&1 &
echo $! > /run/crid/crid.pid
for _ in $(seq 100); do [ -S /run/crid/crid.sock ] && break; sleep 0.1; done
[ -S /run/crid/crid.sock ] || { echo "crid did not start; see /var/log/crid.log" >&2; tail -20 /var/log/crid.log >&2; exit 1; }
echo "crid is running (pid $(cat /run/crid/crid.pid)), socket /run/crid/crid.sock, log /var/log/crid.log"

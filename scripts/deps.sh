#!/usr/bin/env bash
# Installs the Debian packages crid and its tests need (idempotent).
# Debian's runc stays installed for comparison; crid's default handler runs
# the runc scripts/build-runc.sh builds (gcc, libseccomp-dev and pkg-config
# are what its cgo build needs). apparmor: its parser checks crid's default
# profile in the unit tests (this host's kernel does not enforce AppArmor).
set -euo pipefail
pkgs="runc crun apparmor containernetworking-plugins iptables iproute2 busybox nginx-light util-linux procps gcc libc6-dev libseccomp-dev pkg-config make git ca-certificates"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade $missing
fi
command -v go >/dev/null || [ -x /usr/local/go/bin/go ] || { echo "Go is required at /usr/local/go" >&2; exit 1; }

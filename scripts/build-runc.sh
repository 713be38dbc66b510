#!/usr/bin/env bash
# Builds runc from the Go module proxy and installs it as /usr/local/sbin/runc,
# the path of crid's default "runc" handler. Debian 12's runc (1.1.5,
# /usr/sbin/runc) predates the fixes for several container escapes
# (CVE-2024-21626, CVE-2025-31133, CVE-2025-52565, CVE-2025-52881, ...);
# Debian's package stays installed and untouched.
#
# Idempotent and cheap when nothing changed: the build is skipped when the
# installed binary already reports the pinned version and source checksum.
#
# Environment: RUNC_VERSION (module version, default the pin below),
# RUNC_DEST (install path, default /usr/local/sbin/runc).
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

# The newest v1.5 patch release the module proxy serves.
RUNC_VERSION=${RUNC_VERSION:-v1.5.3}
RUNC_DEST=${RUNC_DEST:-/usr/local/sbin/runc}
module=github.com/opencontainers/runc

# A module zip carries no git metadata, so runc's Makefile's
# `git describe` commit cannot be had; the commit line records the module
# version and its go.sum hash instead, which pin the source just as well.
info=$(go mod download -json "$module@$RUNC_VERSION")
field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" <<<"$info"; }
src=$(field Dir)
sum=$(field Sum)
[ -n "$src" ] && [ -n "$sum" ] || { echo "build-runc: go mod download gave no source for $module@$RUNC_VERSION" >&2; exit 1; }
commit="$RUNC_VERSION $sum"
want_version="runc version ${RUNC_VERSION#v}"

installed_matches() {
	local out
	out=$("$RUNC_DEST" --version 2>/dev/null) || return 1
	[ "$(sed -n 1p <<<"$out")" = "$want_version" ] && grep -qxF "commit: $commit" <<<"$out"
}

# Two scripts (install.sh, test.sh) may run at once on one machine: they
# take turns on a lock on this script itself, which leaves no file behind.
exec 9<"${BASH_SOURCE[0]}"
flock 9
mkdir -p "$(dirname "$RUNC_DEST")"

if installed_matches; then
	echo "build-runc: $RUNC_DEST is already $want_version"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "build-runc: building $module@$RUNC_VERSION"
# Built inside the downloaded module, as its own main module, so that a
# replace directive in runc's go.mod (none in v1.5.3) is honoured, which
# `go install module@version` would refuse. -mod=mod: the module cache copy
# is read-only and has no vendor directory. Build tags as runc's Makefile
# minus libpathrs (a Rust library Debian 12 does not package; runc then
# uses its pure-Go path resolution); cgo links Debian's libseccomp
# dynamically. The VERSION file embedded in the source gives the version.
(
	cd "$src"
	CGO_ENABLED=1 GOFLAGS="$(go env GOFLAGS) -mod=mod" go build -trimpath -buildmode=pie \
		-tags "seccomp urfave_cli_no_docs" \
		-ldflags "-X 'main.gitCommit=$commit'" \
		-o "$tmp/runc" .
)
got=$("$tmp/runc" --version | sed -n 1p)
[ "$got" = "$want_version" ] || { echo "build-runc: built binary reports \"$got\", want \"$want_version\"" >&2; exit 1; }
# A rename, so a runc started meanwhile (crid, tests) never sees half a file.
install -m 0755 "$tmp/runc" "$RUNC_DEST.new"
mv -f "$RUNC_DEST.new" "$RUNC_DEST"
"$RUNC_DEST" --version | sed 's/^/build-runc: /'

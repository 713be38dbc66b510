#!/usr/bin/env bash
# Build crictl and critest of cri-tools $CRI_TOOLS_VERSION into DIR.
# Usage: build-tools.sh DIR
# Needs Go and the Go module proxy; skips work when DIR already holds both
# binaries of that version.
set -euo pipefail

CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.37.0}
out=${1:?usage: build-tools.sh DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
stamp="$out/.cri-tools-version"

if [[ -x $out/crictl && -x $out/critest && "$(cat "$stamp" 2>/dev/null)" == "$CRI_TOOLS_VERSION" ]]; then
	echo "build-tools: crictl and critest $CRI_TOOLS_VERSION already in $out"
	exit 0
fi

# Work outside any module so crid's go.mod does not interfere, and never
# switch Go toolchains behind the caller's back.
export GO111MODULE=on GOFLAGS=-mod=mod GOTOOLCHAIN=local
tmp=$(mktemp -d /tmp/crid-cri-tools.XXXXXX)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

echo "build-tools: crictl $CRI_TOOLS_VERSION"
(cd "$tmp" && GOBIN="$out" go install \
	-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
	"sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION")

echo "build-tools: critest $CRI_TOOLS_VERSION"
src=$(cd "$tmp" && go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
if [[ -z $src || ! -d $src ]]; then
	echo "build-tools: could not download sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" >&2
	exit 1
fi
# The module cache is read-only; build in a writable copy.
cp -r "$src" "$tmp/cri-tools"
chmod -R u+w "$tmp/cri-tools"
(cd "$tmp/cri-tools" && go test -c -o "$out/critest" \
	-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" ./cmd/critest)

echo "$CRI_TOOLS_VERSION" >"$stamp"
echo "build-tools: done: $out/crictl $out/critest"

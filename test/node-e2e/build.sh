#!/usr/bin/env bash
# Build Kubernetes' node e2e binaries from the Go module proxy, cached.
#
# Usage: test/node-e2e/build.sh [CACHE_DIR]
#
# Builds kubelet, e2e_node.test, ginkgo and agnhost (static, for the agnhost
# test image, with the TLS pair the image carries) of Kubernetes
# $KUBE_VERSION from the module in build/ and puts
# them in CACHE_DIR/$KUBE_VERSION (default: $NODE_E2E_CACHE, else
# /var/cache/crid-node-e2e). A binary already there is reused: the cache is
# keyed by the version and by a hash of build/go.mod and build/go.sum, so
# editing the module rebuilds. Prints the binary directory on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KUBE_VERSION=v1.37.2
cache=${1:-${NODE_E2E_CACHE:-/var/cache/crid-node-e2e}}

log() { echo "build.sh: $(date +%T) $*" >&2; }

command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
# The build module names its versions; refuse a drift between the two.
grep -q "k8s.io/kubernetes $KUBE_VERSION\$" "$here/build/go.mod" ||
	{ log "error: build/go.mod does not require k8s.io/kubernetes $KUBE_VERSION"; exit 1; }

key=$(cat "$here/build/go.mod" "$here/build/go.sum" | sha256sum | cut -c1-12)
dir=$cache/$KUBE_VERSION-$key
mkdir -p "$dir"

# build NAME CMD... PKG: run `CMD -o OUT PKG` in the build module unless NAME
# is cached. The
# output goes to a temporary name first so an interrupted build never
# leaves a truncated binary that a later run would trust.
build() {
	local name=$1
	shift
	if [[ -x $dir/$name ]]; then
		log "$name: cached ($dir/$name)"
		return 0
	fi
	log "building $name"
	local start=$SECONDS
	(cd "$here/build" && GOFLAGS=-mod=readonly nice -n 10 "${@:1:$#-1}" -o "$dir/.$name.tmp" "${@: -1}")
	mv "$dir/.$name.tmp" "$dir/$name"
	log "$name built in $((SECONDS - start))s"
}

# CGO off as in Kubernetes' release builds of kubelet; e2e_node.test too,
# so neither depends on this machine's libc.
export CGO_ENABLED=0
# The version Kubernetes' build stamps in; without it kubelet and the
# in-process apiserver report v0.0.0-master, which version checks misread.
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
ver=k8s.io/component-base/version
stamp="-X $ver.gitVersion=$KUBE_VERSION -X $ver.gitMajor=1 -X $ver.gitMinor=$minor -X $ver.gitTreeState=clean"
build ginkgo go build -trimpath github.com/onsi/ginkgo/v2/ginkgo
build kubelet go build -trimpath -ldflags "-s -w $stamp" k8s.io/kubernetes/cmd/kubelet
build e2e_node.test go test -c -trimpath -ldflags "$stamp" k8s.io/kubernetes/test/e2e_node
build agnhost go build -trimpath -ldflags "-s -w" k8s.io/kubernetes/test/images/agnhost
# The agnhost image's TLS pair (its HTTPS servers' /localhost.crt and .key).
if [[ ! -f $dir/localhost.key ]]; then
	kdir=$(cd "$here/build" && GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' k8s.io/kubernetes)
	cp "$kdir/test/images/agnhost/porter/localhost.crt" "$kdir/test/images/agnhost/porter/localhost.key" "$dir/"
	chmod 0644 "$dir/localhost.crt" "$dir/localhost.key"
fi
echo "$dir"

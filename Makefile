GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

CC ?= gcc
NSEXEC_OUT ?= bin/crid-nsexec

.PHONY: build nsexec runc install test unit conformance node-e2e bench-compare vm-run vm-e2e clean

build:
	mkdir -p bin _output
	# Static (no cgo): crid needs no C library, and not mapping libc and
	# the dynamic loader saves ~3.5 MiB of the daemon's resident memory.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...
	$(MAKE) nsexec

# crid-nsexec is C (it must be single-threaded to setns into a container),
# static so it runs from a sealed memfd, with libseccomp as runc uses it.
nsexec:
	mkdir -p $(dir $(NSEXEC_OUT))
	$(CC) -static -O2 -Wall -Wextra -Werror -o $(NSEXEC_OUT) cmd/crid-nsexec/nsexec.c -l:libseccomp.a

# runc for the default handler, /usr/local/sbin/runc, from the Go module proxy.
runc:
	./scripts/build-runc.sh

install:
	./scripts/install.sh

test:
	./scripts/test.sh

unit:
	$(GO) test ./internal/...

conformance: build
	./test/conformance/build-tools.sh $(CURDIR)/bin/cri-tools
	./test/conformance/run.sh --crid $(CURDIR)/bin/crid --tools $(CURDIR)/bin/cri-tools --out $(CURDIR)/_output/conformance

# Kubernetes' node conformance suite (kubelet + e2e_node v1.37.2) against
# crid; NODE_E2E_ARGS="--subset ci" for the CI subset (see test/node-e2e/run.sh).
node-e2e: build
	./test/node-e2e/run.sh --crid $(CURDIR)/bin/crid $(NODE_E2E_ARGS)

# A command as root in a Debian 12 VM with systemd, cgroup v2 and AppArmor
# (docs/vm.md): make vm-run CMD='systemctl status' [VM_ARGS='--mem 8G'].
CMD ?= sh -c 'systemctl status --no-pager; cat /proc/self/cgroup'
vm-run: build
	./test/vm/run.sh $(VM_ARGS) -- $(CMD)

# test/e2e in that VM: make vm-e2e [RUN='TestPodLifecycle|TestSystemdCgroupDriver'].
RUN ?= .
vm-e2e:
	./test/vm/e2e.sh --timeout 100m $(VM_ARGS) -- -test.run '$(RUN)' -test.timeout 90m

bench-compare: build
	./scripts/bench-compare.sh

clean:
	rm -rf bin _output

GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build install test unit conformance bench-compare clean

build:
	mkdir -p bin _output
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

install:
	./scripts/install.sh

test:
	./scripts/test.sh

unit:
	$(GO) test ./internal/...

conformance: build
	./test/conformance/build-tools.sh $(CURDIR)/bin/cri-tools
	./test/conformance/run.sh --crid $(CURDIR)/bin/crid --tools $(CURDIR)/bin/cri-tools --out $(CURDIR)/_output/conformance

bench-compare: build
	./scripts/bench-compare.sh

clean:
	rm -rf bin _output

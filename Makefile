# Gatehouse — the two commands a newcomer needs:
#   make demo   run the proxy in front of a demo app, with a demo OIDC provider (no credentials, no network)
#   make test   install test dependencies (chromium, memcached, nginx, helm, promtool) when missing, lint, and run every test with -race
SHELL       := /bin/bash
GO          ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOIMPORTS   ?= golang.org/x/tools/cmd/goimports@v0.52.0
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS     := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build demo test deps lint unit e2e chart skipped fuzz bench clean image image-test

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/gatehouse ./cmd/gatehouse

demo:
	$(GO) run ./cmd/gatehouse demo

deps:
	./scripts/install-deps.sh
	./charts/install-helm.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@out=$$($(GO) run $(GOIMPORTS) -l -local github.com/gatehouse/gatehouse $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "goimports needed (standard library first, then modules):"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd charts/gatehouse/tests && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...
	cd tools/image && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

# Unit and integration tests, then the browser end-to-end suite (verbose,
# so the log shows each Chromium test that ran).
test: deps lint unit e2e chart image-test skipped

# Test output is kept in .test-logs/ so `skipped` can list every skipped
# test at the end: a green run must not hide one.
LOGS := .test-logs

unit:
	@mkdir -p $(LOGS)
	set -o pipefail; $(GO) test -race -count=1 -v $$($(GO) list ./... | grep -v /e2e) 2>&1 | tee $(LOGS)/unit.log | grep -E '^(ok|FAIL|--- FAIL|--- SKIP|panic)' ; \
	  status=$${PIPESTATUS[0]}; [ $$status -eq 0 ] || { echo "unit tests failed; full output in $(LOGS)/unit.log"; grep -B2 -A20 -- '--- FAIL' $(LOGS)/unit.log | head -200; exit $$status; }

e2e:
	@mkdir -p $(LOGS)
	set -o pipefail; $(GO) test -race -count=1 -v ./e2e/ 2>&1 | tee $(LOGS)/e2e.log

skipped:
	@n=$$(cat $(LOGS)/*.log 2>/dev/null | grep -c -- '--- SKIP' || true); \
	  echo "skipped tests: $$n"; cat $(LOGS)/*.log 2>/dev/null | grep -- '--- SKIP' || true

# Helm chart: lint, render four value sets, decode strictly into Kubernetes
# types (a module of its own, so those types stay out of Gatehouse's).
chart:
	cd charts/gatehouse/tests && $(GO) test -count=1 -v ./...

# Short fuzzing runs of every fuzz target (the seed corpora in testdata/
# also run as part of `make test`); FUZZ=Name runs only that target, e.g.
# make fuzz FUZZ=FuzzForwardedPath FUZZTIME=10m
FUZZTIME ?= 20s
FUZZ ?= Fuzz
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^$(FUZZ)' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Authenticated requests through Gatehouse (memory store, memcache store,
# a large identity) vs. a bare httputil.ReverseProxy (the floor), in one
# run: CPU per request, throughput, p50/p99, 64 KiB responses, RSS, cold
# start, and each one's ratio to the floor. Go benchmarks of the per-request
# path: go test -run '^$$' -bench . -benchmem ./proxy ./session
BENCH_DURATION ?= 3s
BENCH_CONCURRENCY ?= 32
bench: deps
	$(GO) run ./bench -duration $(BENCH_DURATION) -concurrency $(BENCH_CONCURRENCY)

# Container image built with neither a Docker daemon nor a base image
# (tools/image, a module of its own): linux/amd64 + linux/arm64 in one OCI
# archive. IMAGE=REF names it (default ghcr.io/gatehouse/gatehouse:VERSION
# without a leading v).
IMAGE_OCI := bin/gatehouse-image.oci.tar
IMAGE     ?=
image:
	@test -s /etc/ssl/certs/ca-certificates.crt || { apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates; }
	cd tools/image && $(GO) run . -out ../../$(IMAGE_OCI) -version '$(VERSION)' -commit '$(COMMIT)' $(if $(IMAGE),-ref '$(IMAGE)')

# Unpacks the archive and runs the amd64 image's /gatehouse (version, check,
# serve) chrooted as 65532:65532 (needs root).
image-test: image
	@mkdir -p $(LOGS)
	set -o pipefail; cd tools/image && $(GO) test -count=1 -v . -args -archive ../../$(IMAGE_OCI) -version '$(VERSION)' -commit '$(COMMIT)' 2>&1 | tee ../../$(LOGS)/image.log

clean:
	rm -rf bin

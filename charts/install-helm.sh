#!/usr/bin/env bash
# Installs helm through the Go toolchain (from the Go module proxy, not a
# downloaded binary) when it is not already on PATH or in $GOPATH/bin.
# promtool, which the chart tests also need, comes from scripts/install-deps.sh.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
gobin="$(go env GOPATH)/bin"
if command -v helm >/dev/null 2>&1 || [ -x "$gobin/helm" ]; then
  exit 0
fi
echo "installing helm $HELM_VERSION with go install (about a minute)"
GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

#!/usr/bin/env bash
# Installs what the chart tests need when it is missing: helm through the Go
# toolchain (from the Go module proxy, not a downloaded binary), and
# promtool (install-promtool.sh) for `promtool check rules`.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v3.19.0}"
gobin="$(go env GOPATH)/bin"
if ! command -v helm >/dev/null 2>&1 && [ ! -x "$gobin/helm" ]; then
  echo "installing helm $HELM_VERSION with go install (about a minute)"
  GOFLAGS=-mod=mod go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
"$(dirname "$0")/install-promtool.sh"

#!/usr/bin/env bash
# Installs promtool (Debian's prometheus package) for the chart tests, which
# run `promtool check rules` on the PrometheusRule. It does nothing when
# promtool is already on PATH. The package would start a Prometheus service:
# a policy-rc.d that says "not now" keeps it stopped during the install (the
# same way as scripts/install-deps.sh), and nothing is ever stopped by name.
set -euo pipefail
command -v promtool >/dev/null 2>&1 && exit 0

echo "installing: prometheus (for promtool)"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install prometheus" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
added_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 0755 "$policy"
  added_policy=1
fi
cleanup() { [ -n "$added_policy" ] && $SUDO rm -f "$policy"; return 0; }
trap cleanup EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null 2>&1 || { echo "prometheus installed but promtool is not on PATH" >&2; exit 1; }

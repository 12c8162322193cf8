#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: Chromium for the
# end-to-end tests, memcached for the session store tests, nginx for the
# forward-auth end-to-end test and promtool (Debian's prometheus package)
# for the chart tests' `promtool check rules`. It does nothing when they
# are already there.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v memcached >/dev/null 2>&1 || need+=(memcached)
# nginx with auth_request, for the forward-auth end-to-end test
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install ${need[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Debian would start the packaged nginx, memcached and prometheus as
# services; the tests run their own, so no service is started during the
# install (a policy-rc.d that says "not now"), and nothing is ever stopped
# by name.
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
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
if [[ " ${need[*]} " == *" prometheus "* ]] && ! command -v promtool >/dev/null 2>&1; then
  echo "prometheus installed but promtool is not on PATH" >&2
  exit 1
fi

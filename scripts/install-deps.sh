#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: Chromium for the
# end-to-end tests and memcached for the session store tests. It does
# nothing when they are already there.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v memcached >/dev/null 2>&1 || need+=(memcached)
# nginx with auth_request, for the forward-auth end-to-end test
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install ${need[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged nginx on port 80; the tests run their own.
if [[ " ${need[*]} " == *" nginx-light "* ]]; then
  $SUDO pkill -x nginx 2>/dev/null || true
fi

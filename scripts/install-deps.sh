#!/usr/bin/env bash
# Installs every Debian 12 package pushfabric needs to build, run and test. Idempotent: when all
# packages are present it changes nothing (and needs no network).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libhiredis-dev libevent-dev
  redis-server redis-tools
  python3 curl
  nodejs                     # the JS client's tests (clients/js), Node >= 18
  haproxy docker-compose     # the local cluster (scripts/cluster-local.sh) and the compose check
  clang libclang-rt-14-dev   # sanitizers and libFuzzer for the test suite
  clang-tidy cppcheck        # static checks in the test suite
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

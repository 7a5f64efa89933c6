#!/usr/bin/env bash
# Builds pushfabric into build/ (or $PF_BUILD_DIR). Extra arguments go to cmake's configure step.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${PF_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE="${PF_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"

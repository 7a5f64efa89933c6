#!/usr/bin/env bash
# Runs every test: installs dependencies, then
#   1. a -Werror build and the whole ctest suite (unit + integration on real Redis and sockets),
#   2. the same suite again under AddressSanitizer + UndefinedBehaviorSanitizer (clang),
#   3. cppcheck and clang-tidy (scripts/lint.sh),
#   4. each libFuzzer harness for a bounded time (PF_FUZZ_SECONDS, default 15).
# PF_TEST_QUICK=1 runs step 1 only.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/install-deps.sh

jobs="$(nproc)"
step() { printf '\n==== %s ====\n' "$*"; }

step "build (-Werror) and test"
cmake -S . -B build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPF_WERROR=ON >/dev/null
cmake --build build-test -j"$jobs"
(cd build-test && ctest --output-on-failure --timeout 300)

if [ "${PF_TEST_QUICK:-0}" = 1 ]; then
  exit 0
fi

step "ASan + UBSan build and test"
CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPF_WERROR=ON -DPF_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure --timeout 600)

step "static checks (cppcheck, clang-tidy, compose and HAProxy configs)"
scripts/lint.sh
docker-compose -f docker-compose.yml config -q
haproxy -c -q -f haproxy/haproxy.cfg
echo "compose and haproxy configs valid"

if [ -x scripts/fuzz.sh ]; then
  step "fuzzers"
  scripts/fuzz.sh "${PF_FUZZ_SECONDS:-15}"
fi

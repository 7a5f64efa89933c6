#!/usr/bin/env bash
# Static checks CI runs: clang-format (no diff), cppcheck and clang-tidy (.clang-tidy) on all C.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${PF_LINT_BUILD_DIR:-build-lint}"
cmake -S . -B "$build" -DPF_FUZZ=OFF >/dev/null   # for compile_commands.json
srcs=$(git ls-files 'common/*.c' 'gateway/*.c' 'publisher-cli/*.c')
cppcheck --enable=warning,performance,portability --error-exitcode=1 --inline-suppr --quiet \
  -I common -I gateway $srcs
out="$build/clang-tidy.log"
# shellcheck disable=SC2086
clang-tidy -p "$build" --quiet $srcs >"$out" 2>&1 || true
if grep -q "error:" "$out"; then
  grep -E "(warning|error):" "$out" >&2
  echo "lint: clang-tidy found problems (full output: $out)" >&2
  exit 1
fi
echo "lint: cppcheck and clang-tidy clean"

#!/usr/bin/env bash
# fuzz.sh - builds the libFuzzer harnesses (tests/fuzz) into build-fuzz/ and runs each for a while.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 20)
# Env:   PF_FUZZ_BUILD_DIR (default <repo>/build-fuzz), PF_FUZZ_TARGETS (default: all six).
# Each harness runs on a copy of its seed corpus in a temporary directory, so the repository is
# never written to (except the build directory). Prints one line per target; exits 1 when any
# target crashed, broke a property, timed out or ran out of memory, and then keeps the temporary
# directory so the reproducer named in the line stays available.
set -euo pipefail

secs=${1:-20}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
build=${PF_FUZZ_BUILD_DIR:-$root/build-fuzz}
targets=${PF_FUZZ_TARGETS:-op json channel redis_url batch ws}

# Longest input per target: long enough to reach every length branch, short enough to stay fast.
max_len() {
    case $1 in
    op) echo 4096 ;;
    json) echo 8192 ;;
    channel) echo 300 ;;
    redis_url) echo 1024 ;;
    batch) echo 16384 ;; # 11k control bytes escape to > 64 KiB: the 64-bit length header
    ws) echo 9000 ;;     # an HTTP request head may be up to 8 KiB
    *) echo 4096 ;;
    esac
}

dict_for() {
    case $1 in
    op | json | batch) echo "$root/tests/fuzz/json.dict" ;;
    redis_url) echo "$root/tests/fuzz/redis_url.dict" ;;
    esac
}

echo "fuzz: building into $build" >&2
mkdir -p "$build"
CC=clang cmake -S "$root" -B "$build" -DPF_FUZZ=ON -DPF_SANITIZE=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/fuzz-configure.log" 2>&1 ||
    { cat "$build/fuzz-configure.log" >&2; exit 2; }
read -r -a names <<<"$targets"
cmake --build "$build" -j2 --target "${names[@]/#/fuzz_}" >"$build/fuzz-build.log" 2>&1 ||
    { tail -40 "$build/fuzz-build.log" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/pf-fuzz.XXXXXX")
failed=0
for t in "${names[@]}"; do
    bin=$build/tests/fuzz/fuzz_$t
    dir=$work/$t
    mkdir -p "$dir/corpus" "$dir/artifacts"
    if [ -d "$root/tests/fuzz/corpus/$t" ]; then
        cp -R "$root/tests/fuzz/corpus/$t/." "$dir/corpus/"
    fi
    args=(-max_total_time="$secs" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix="$dir/artifacts/")
    d=$(dict_for "$t")
    if [ -n "$d" ] && [ -f "$d" ]; then args+=(-dict="$d"); fi
    rc=0
    # ASan/UBSan stop at the first error; libFuzzer then writes the input out.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$bin" "${args[@]}" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    if [ -z "$execs" ]; then # crashes end before the final stats: use the last progress line
        execs=$(grep -o '#[0-9]*' "$dir/log" | tail -1 | tr -d '#')
    fi
    corpus=$(find "$dir/corpus" -type f | wc -l)
    artifact=$(find "$dir/artifacts" -type f | head -1)
    if [ "$rc" -eq 0 ] && [ -z "$artifact" ]; then
        printf 'fuzz_%-10s ok      %10s execs  %4s corpus files  %ss\n' "$t" "${execs:-?}" \
            "$corpus" "$secs"
    else
        failed=1
        kind=$(basename "${artifact:-crash}" | sed 's/-.*//')
        why=$(grep -m1 -E 'property failed|runtime error|ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)' \
            "$dir/log" | sed 's/^[= 0-9]*//' || true)
        printf 'fuzz_%-10s FAILED  %10s execs  %s: %s\n' "$t" "${execs:-?}" "$kind" \
            "${artifact:-no reproducer written (exit $rc)}"
        printf '            %s\n            log: %s\n' "${why:-see log}" "$dir/log"
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "fuzz: FAILED; reproducers and logs kept in $work (rerun: <harness> <file>)"
    exit 1
fi
rm -rf "$work"
echo "fuzz: all targets ok"

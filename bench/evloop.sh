#!/usr/bin/env bash
# evloop.sh - owns the event-loop comparison of bench/: which event loop should the gateway's
# shards use? Runs push-gateway with each lws loop (poll/2 threads, libuv/2, libev/1, poll/1) and,
# when given, the gateway's own loop ("own": no --event-lib flag) against the same workload in one
# run, on loopback:
#   (a) idle: CONNS connections subscribed to one channel: gateway RSS per connection, connect rate;
#   (b) broadcast, --merge-ms 0, pubload at 20 msgs/s for PUB_SECS s to that channel;
#   (c) the same at 200 msgs/s.
# Prints a Markdown report and writes it to bench/results-evloop.md (or $OUT).
# Every process it starts is killed by PID on exit. Bounded: ~90 s per configuration.
#
# Environment (defaults): BUILD=<repo>/build  GATEWAY=$BUILD/gateway/push-gateway
#   GATEWAY_LWS=$GATEWAY (binary that still has --event-lib, for the poll/libuv/libev configs)
#   LOADGEN=$BUILD/bench/loadgen  PUBLOAD=$BUILD/bench/pubload  CONNS=10000  LOADGENS=2
#   PUB_SECS=20  RATES="20 200"  DRAIN_MAX=20
#   CONFIGS="poll:2 libuv:2 libev:1 poll:1 own:2 own:1" (LIB:THREADS; own = $GATEWAY, no --event-lib)
# A config whose binary does not offer what it needs is skipped with a note.
#   OUT=<repo>/bench/results-evloop.md  KEEP=0 (1 keeps the work directory with all logs)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
GATEWAY="${GATEWAY:-$BUILD/gateway/push-gateway}"
GATEWAY_LWS="${GATEWAY_LWS:-$GATEWAY}"
LOADGEN="${LOADGEN:-$BUILD/bench/loadgen}"
PUBLOAD="${PUBLOAD:-$BUILD/bench/pubload}"
CONNS="${CONNS:-10000}"
LOADGENS="${LOADGENS:-2}"
PUB_SECS="${PUB_SECS:-20}"
RATES="${RATES:-20 200}"
DRAIN_MAX="${DRAIN_MAX:-20}"
CONFIGS="${CONFIGS:-poll:2 libuv:2 libev:1 poll:1 own:2 own:1}"
OUT="${OUT:-$ROOT/bench/results-evloop.md}"
KEEP="${KEEP:-0}"
CLK_TCK="$(getconf CLK_TCK)"

for b in "$GATEWAY" "$GATEWAY_LWS" "$LOADGEN" "$PUBLOAD"; do
  [ -x "$b" ] || { echo "evloop: $b not built (see bench/README.md)" >&2; exit 2; }
done
GATEWAY="$(realpath "$GATEWAY")" GATEWAY_LWS="$(realpath "$GATEWAY_LWS")" LOADGEN="$(realpath "$LOADGEN")" PUBLOAD="$(realpath "$PUBLOAD")"
OUT="$(realpath -m "$OUT")"
command -v redis-server >/dev/null || { echo "evloop: redis-server missing" >&2; exit 2; }
command -v python3 >/dev/null || { echo "evloop: python3 missing" >&2; exit 2; }

WORK="$(mktemp -d /tmp/pf-evloop.XXXXXX)"
PIDS=()
NOTES=""
cd "$WORK"

cleanup() {
  [ "${#PIDS[@]}" -gt 0 ] && stop_pids "${PIDS[@]}"
  if [ "$KEEP" = 1 ]; then echo "evloop: logs kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "evloop: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# SIGTERMs the given PIDs (ours), SIGKILLs what is still alive 5 s later (noted in the report),
# and drops them from PIDS.
stop_pids() {
  local p keep=() q i
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    q=0
    for p in "$@"; do alive "$p" && q=1; done
    [ "$q" = 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do
    if alive "$p"; then
      NOTES+="- $(tr '\0' ' ' <"/proc/$p/cmdline" | sed -E 's|^[^ ]*/||; s/ --(listen|redis|port) [^ ]*//g' | cut -c1-100): still running 5 s after SIGTERM, killed (SIGKILL)\n"
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
  for q in "${PIDS[@]}"; do
    case " $* " in *" $q "*) ;; *) keep+=("$q") ;; esac
  done
  PIDS=("${keep[@]}")
}

wait_tcp() { # host port timeout_s
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { # utime+stime in clock ticks, 0 once gone
  local v
  v="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}')"
  echo "${v:-0}"
}
lg_cpu() { # utime+stime ticks of all loadgens
  local p s=0
  for p in "${LG_PIDS[@]}"; do s=$((s + $(cpu_ticks "$p"))); done
  echo "$s"
}
alive() { # running and not a zombie
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$st" ] && [ "$st" != Z ]
}

# Snapshot of every loadgen: sig USR2 peeks, USR1 also resets the phase counters.
# Waits until each --out file carries the new snapshot number.
declare -a LG_PIDS LG_SNAP
lg_snap() {
  local sig="$1" i n line
  for ((i = 0; i < ${#LG_PIDS[@]}; i++)); do
    LG_SNAP[i]=$((LG_SNAP[i] + 1))
    kill -"$sig" "${LG_PIDS[i]}" 2>/dev/null || true
  done
  for ((i = 0; i < ${#LG_PIDS[@]}; i++)); do
    for ((n = 0; n < 250; n++)); do
      line=""
      read -r line 2>/dev/null <"$WORK/lg$i.json" || true
      [[ "$line" =~ \"snapshot\":([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge "${LG_SNAP[i]}" ] && break
      alive "${LG_PIDS[i]}" || break
      sleep 0.02
    done
  done
}

# Sums/merges the loadgens' current snapshots: prints "subscribed messages p50 p99 p999 max
# handshakes_per_s all_subscribed_s errors closes".
lg_merge() {
  python3 - "$WORK" "${#LG_PIDS[@]}" <<'EOF' || echo "0 0 0 0 0 0 0 -1 0 -"
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
try:
    docs = [json.load(open(f"{work}/lg{i}.json")) for i in range(n)]
except (OSError, ValueError):
    print("0 0 0 0 0 0 0 -1 0 -")
    sys.exit(0)
hist = {}
for d in docs:
    for v, c in d["latency_hist_us"]:
        hist[v] = hist.get(v, 0) + c
total = sum(hist.values())
def pct(q):
    if not total: return 0.0
    want, acc = max(1, round(q * total)), 0
    for v in sorted(hist):
        acc += hist[v]
        if acc >= want: return v / 1000.0
    return 0.0
mx = max(d["latency_ms"]["max"] for d in docs)
sub = sum(d["subscribed_now"] for d in docs)
msgs = sum(d["messages"] for d in docs)
hs = sum(d["handshakes"] for d in docs)
t_all = max(d["all_subscribed_s"] for d in docs)
if min(d["all_subscribed_s"] for d in docs) < 0: t_all = -1
rate = hs / t_all if t_all > 0 else 0
errs = sum(v for d in docs for k, v in d["errors"].items() if k != "close_frames")
closes = {}
for d in docs:
    for k, v in d["closes"].items(): closes[k] = closes.get(k, 0) + v
cl = ",".join(f"{k}x{v}" for k, v in sorted(closes.items())) or "-"
print(sub, msgs, f"{pct(.5):.2f}", f"{pct(.99):.2f}", f"{pct(.999):.2f}", f"{mx:.2f}", f"{rate:.0f}", f"{t_all:.2f}", errs, cl)
EOF
}

# One configuration: fills IDLE_ROWS / BCAST_ROWS.
IDLE_ROWS=""
BCAST_ROWS=""
# Prints the gateway command line (binary and loop flags) for config LIB THREADS, or fails.
gw_cmd() {
  local bin="$GATEWAY_LWS" flags=(--event-lib "$1")
  if [ "$1" = own ]; then
    bin="$GATEWAY"
    flags=()
    "$bin" --help 2>&1 | grep -q -- '--event-lib' && return 1 # still lws: "own" would be poll
  else
    "$bin" --help 2>&1 | grep -q -- '--event-lib' || return 1
  fi
  echo "$bin" "${flags[@]}" --threads "$2"
}

run_config() {
  local lib="$1" thr="$2" rport gport rpid gpid i per rss0 rss1 m tag cmd
  if ! cmd="$(gw_cmd "$lib" "$thr")"; then
    NOTES+="- $lib/$thr: skipped, no gateway binary offers it (GATEWAY / GATEWAY_LWS)\n"
    return 0
  fi
  tag="$lib/$thr"
  rport="$(free_port)"
  gport="$(free_port)"
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    >"$WORK/redis-$lib-$thr.log" 2>&1 &
  rpid=$!
  PIDS+=("$rpid")
  wait_tcp 127.0.0.1 "$rport" 10 || { log "redis did not start"; return 1; }
  # shellcheck disable=SC2086 # cmd is binary + flags, no spaces in paths
  $cmd --listen "127.0.0.1:$gport" --redis "redis://127.0.0.1:$rport" --merge-ms 0 \
    >"$WORK/gw-$lib-$thr.log" 2>&1 &
  gpid=$!
  PIDS+=("$gpid")
  wait_tcp 127.0.0.1 "$gport" 10 || { log "gateway $tag did not start"; return 1; }
  sleep 0.5
  rss0="$(rss_kib "$gpid")"

  LG_PIDS=()
  LG_SNAP=()
  per=$(((CONNS + LOADGENS - 1) / LOADGENS))
  for ((i = 0; i < LOADGENS; i++)); do
    "$LOADGEN" --port "$gport" -n "$per" --src-ips 8 --duration 600 --out "$WORK/lg$i.json" \
      >"$WORK/lg$i-$lib-$thr.out" 2>"$WORK/lg$i-$lib-$thr.err" &
    LG_PIDS+=($!)
    LG_SNAP+=(0)
    PIDS+=($!)
  done
  # (a) idle: wait until all are subscribed (at most 60 s).
  for ((i = 0; i < 300; i++)); do
    sleep 0.2
    lg_snap USR2
    read -r -a m <<<"$(lg_merge)"
    [ "${m[0]}" -ge "$((per * LOADGENS))" ] && break
  done
  sleep 2
  alive "$gpid" || NOTES+="- $tag: gateway died during connect (see log)\n"
  rss1="$(rss_kib "$gpid" || echo 0)"
  lg_snap USR2
  read -r -a m <<<"$(lg_merge)"
  IDLE_ROWS+="| $lib | $thr | ${m[0]} / $((per * LOADGENS)) | ${m[6]} | ${m[7]} | $rss0 | $rss1 | $(awk -v a="$rss0" -v b="$rss1" -v n="${m[0]}" 'BEGIN{printf "%.2f", (n ? (b-a)/n : 0)}') | ${m[8]} |\n"
  log "$tag idle: subscribed ${m[0]}, ${m[6]} conn/s, RSS $rss0 -> $rss1 KiB"

  local rate cpu0 cpu1 t0 t1 prev ppid sent last deadline dsec exp lcpu0 lcpu1
  for rate in $RATES; do
    alive "$gpid" || break
    lg_snap USR1 # reset phase counters
    cpu0="$(cpu_ticks "$gpid")"
    lcpu0="$(lg_cpu)"
    t0="$(date +%s.%N)"
    "$PUBLOAD" --redis-port "$rport" --rate "$rate" --duration "$PUB_SECS" --quiet >"$WORK/pub.json" &
    ppid=$!
    PIDS+=("$ppid")
    wait "$ppid" || true
    stop_pids "$ppid"
    sent="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sent"])' "$WORK/pub.json" 2>/dev/null || echo 0)"
    exp=$((sent * per * LOADGENS))
    # drain: until everything expected arrived, or no progress for 2 s, or DRAIN_MAX s passed.
    prev=-1
    last="$(date +%s.%N)"
    deadline=$(($(date +%s) + DRAIN_MAX))
    while [ "$(date +%s)" -lt "$deadline" ]; do
      lg_snap USR2
      read -r -a m <<<"$(lg_merge)"
      if [ "${m[1]}" != "$prev" ]; then last="$(date +%s.%N)"; prev="${m[1]}"; fi
      [ "${m[1]}" -ge "$exp" ] && break
      awk -v a="$last" -v b="$(date +%s.%N)" 'BEGIN{exit !(b-a > 2)}' && break
      sleep 0.3
    done
    t1="$last"
    cpu1="$(cpu_ticks "$gpid")"
    lcpu1="$(lg_cpu)"
    lg_snap USR1
    read -r -a m <<<"$(lg_merge)"
    dsec="$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')"
    BCAST_ROWS+="| $lib | $thr | $rate | $sent | ${m[1]} / $exp | $(awk -v n="${m[1]}" -v d="$dsec" 'BEGIN{printf "%.0f", (d > 0 ? n/d : 0)}') | $dsec | $(awk -v c0="$cpu0" -v c1="$cpu1" -v t="$CLK_TCK" -v n="${m[1]}" 'BEGIN{printf "%.2f", (n ? (c1-c0)/t/(n/1e6) : 0)}') | $(awk -v c0="$cpu0" -v c1="$cpu1" -v t="$CLK_TCK" -v d="$dsec" 'BEGIN{printf "%.0f", (d > 0 ? (c1-c0)/t/d*100 : 0)}')% | $(awk -v c0="$lcpu0" -v c1="$lcpu1" -v t="$CLK_TCK" -v d="$dsec" 'BEGIN{printf "%.0f", (d > 0 ? (c1-c0)/t/d*100 : 0)}')% | ${m[2]} | ${m[3]} | ${m[5]} | ${m[9]} |\n"
    log "$tag $rate msgs/s: delivered ${m[1]} / $exp in ${dsec}s, p50 ${m[2]} ms p99 ${m[3]} ms"
  done
  alive "$gpid" || NOTES+="- $tag: gateway died during broadcast: $(tail -n 3 "$WORK/gw-$lib-$thr.log" | tr '\n' ' ')\n"
  local rss2
  rss2="$(rss_kib "$gpid" 2>/dev/null || echo "?")"
  NOTES+="- $tag: gateway RSS after the broadcasts $rss2 KiB; log lines warn/error: $(grep -cE ' (warn|error):' "$WORK/gw-$lib-$thr.log" || true)\n"
  stop_pids "${LG_PIDS[@]}"
  stop_pids "$gpid" "$rpid"
}

gw_version() { "$1" --version 2>&1 | head -n 1; }

main() {
  local c start
  start="$(date +%s)"
  for c in $CONFIGS; do
    log "=== ${c%%:*} --threads ${c##*:}"
    run_config "${c%%:*}" "${c##*:}" || NOTES+="- $c: run failed\n"
  done
  {
    echo "# push-gateway event loop comparison"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(uname -r)."
    echo "Command: \`GATEWAY=$GATEWAY GATEWAY_LWS=$GATEWAY_LWS CONNS=$CONNS LOADGENS=$LOADGENS PUB_SECS=$PUB_SECS RATES=\"$RATES\" bench/evloop.sh\` ($(($(date +%s) - start)) s)."
    echo "Loopback only. loadgen ($LOADGENS processes), pubload and redis-server run on the same box as"
    echo "the gateway and compete with it for the same $(nproc) cores. Gateway: \`--merge-ms 0\`, one channel."
    echo "lws loops (poll, libuv, libev): \`$GATEWAY_LWS\` ($(gw_version "$GATEWAY_LWS"));"
    echo "own: \`$GATEWAY\` ($(gw_version "$GATEWAY")), the gateway's own epoll transport."
    echo
    echo "## (a) Idle: $CONNS subscribed connections"
    echo
    echo "| loop | threads | subscribed | connect rate (conn/s) | all subscribed after (s) | RSS before (KiB) | RSS after (KiB) | KiB / conn | loadgen errors |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf "%b" "$IDLE_ROWS"
    echo
    echo "## (b, c) Broadcast to all of them, one frame per message"
    echo
    echo "delivered/s = messages received by all loadgens / (first publish .. last delivery)."
    echo "CPU = gateway utime+stime over the same span; CPU % = share of one core over the span"
    echo "(200 % = both cores); loadgens CPU = all loadgen processes together."
    echo
    echo "| loop | threads | msgs/s published | sent | delivered / expected | delivered/s | span (s) | gateway CPU s / M delivered | gateway CPU | loadgens CPU | p50 ms | p99 ms | max ms | closes |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf "%b" "$BCAST_ROWS"
    echo
    echo "## Notes"
    echo
    printf "%b" "$NOTES"
  } | tee "$OUT"
}

main

#!/usr/bin/env bash
# Runs the docker-compose topology on loopback, without Docker: a private Redis, N gateways
# (default 3) each on its own port, HAProxy in front of them (Debian's haproxy package, run by
# hand with a config generated from haproxy/haproxy-local.cfg.in) and the HTTP publisher.
#
#   scripts/cluster-local.sh            install packages, build, start, print the URLs, wait;
#                                       Ctrl-C (or SIGTERM) stops exactly what it started
#   scripts/cluster-local.sh --check    the same, then check it end to end and stop (exit 0 = ok)
#   scripts/cluster-local.sh --no-build use the binaries already in the build directory
#
# Environment (defaults in brackets):
#   CLUSTER_GATEWAYS           number of gateways [3]
#   CLUSTER_GATEWAY_BASE_PORT  first gateway port; gateway i listens on BASE+i-1 [8091]
#   CLUSTER_GATEWAY_PORTS      explicit gateway ports, comma-separated (overrides the two above)
#   CLUSTER_LB_PORT            HAProxy: WebSocket at /ws and the demo page at / [8080]
#   CLUSTER_STATS_PORT         HAProxy status page (/) and Prometheus metrics (/metrics) [8404]
#   CLUSTER_PUBLISHER_PORT     HTTP publisher [8081]
#   CLUSTER_REDIS_PORT         the private Redis [6390]
#   PUSH_REDIS_URL             use this Redis instead of starting a private one
#   CLUSTER_RUN_DIR            logs, generated haproxy.cfg, cluster.env [run/cluster]
#   PF_BUILD_DIR               build directory (as for scripts/build.sh) [build]
#   HAPROXY                    the haproxy binary [haproxy from PATH, else /usr/sbin/haproxy]
# Other PUSH_* variables (PUSH_MERGE_MS=200, ...) reach every gateway as usual.
#
# Everything listens on 127.0.0.1 only. Each process logs to its own file in the run directory;
# cluster.env there lists names, ports and PIDs. A gateway that exits (stop one with
# `kill <pid>` to watch failover) leaves the others running; if Redis, HAProxy, the publisher or
# the last gateway exits, everything is stopped.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
me="cluster-local"

say() { echo "$me: $*" >&2; }
die() { say "$*"; exit 1; }

check=0
build=1
for arg in "$@"; do
  case "$arg" in
    --check) check=1 ;;
    --no-build) build=0 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) die "unknown argument '$arg' (try --help)" ;;
  esac
done

# ---- settings -------------------------------------------------------------------------------
is_port() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]; }

LB_PORT="${CLUSTER_LB_PORT:-8080}"
STATS_PORT="${CLUSTER_STATS_PORT:-8404}"
PUB_PORT="${CLUSTER_PUBLISHER_PORT:-8081}"
REDIS_PORT="${CLUSTER_REDIS_PORT:-6390}"
BUILD_DIR="${PF_BUILD_DIR:-$root/build}"
RUN_DIR="${CLUSTER_RUN_DIR:-$root/run/cluster}"
REDIS_URL="${PUSH_REDIS_URL:-}"

if [ -n "${CLUSTER_GATEWAY_PORTS:-}" ]; then
  IFS=', ' read -r -a GW_PORTS <<<"$CLUSTER_GATEWAY_PORTS"
  if [ -n "${CLUSTER_GATEWAYS:-}" ] && [ "$CLUSTER_GATEWAYS" != "${#GW_PORTS[@]}" ]; then
    die "CLUSTER_GATEWAYS=$CLUSTER_GATEWAYS but CLUSTER_GATEWAY_PORTS lists ${#GW_PORTS[@]} ports"
  fi
else
  n="${CLUSTER_GATEWAYS:-3}"
  if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 64 ]; then
    die "CLUSTER_GATEWAYS must be a number from 1 to 64, not '$n'"
  fi
  base="${CLUSTER_GATEWAY_BASE_PORT:-8091}"
  if ! is_port "$base" || ! is_port "$((base + n - 1))"; then
    die "CLUSTER_GATEWAY_BASE_PORT=$base leaves no room for $n gateway ports"
  fi
  GW_PORTS=()
  for ((i = 0; i < n; i++)); do GW_PORTS+=("$((base + i))"); done
fi
N="${#GW_PORTS[@]}"
[ "$N" -ge 1 ] || die "no gateway ports"

# Name of every port we will listen on, for the busy-port check and its message.
declare -A port_user=()
claim() { # claim PORT "what (VARIABLE)"
  is_port "$1" || die "$2: '$1' is not a port number"
  [ -z "${port_user[$1]:-}" ] || die "port $1 is given twice: ${port_user[$1]} and $2"
  port_user[$1]="$2"
}
claim "$LB_PORT" "HAProxy (CLUSTER_LB_PORT)"
claim "$STATS_PORT" "HAProxy status page (CLUSTER_STATS_PORT)"
claim "$PUB_PORT" "HTTP publisher (CLUSTER_PUBLISHER_PORT)"
[ -n "$REDIS_URL" ] || claim "$REDIS_PORT" "private Redis (CLUSTER_REDIS_PORT)"
for ((i = 0; i < N; i++)); do
  claim "${GW_PORTS[i]}" "gateway$((i + 1)) (CLUSTER_GATEWAY_BASE_PORT / CLUSTER_GATEWAY_PORTS)"
done

# ---- packages, build, binaries --------------------------------------------------------------
if [ "$build" = 1 ]; then
  scripts/install-deps.sh
  PF_BUILD_DIR="$BUILD_DIR" scripts/build.sh
fi
GATEWAY="$BUILD_DIR/gateway/push-gateway"
PUBLISH="$BUILD_DIR/publisher-cli/push-publish"
for b in "$GATEWAY" "$PUBLISH"; do
  [ -x "$b" ] || die "$b is not built (run scripts/build.sh, or drop --no-build; PF_BUILD_DIR=$BUILD_DIR)"
done
HAPROXY="${HAPROXY:-$(command -v haproxy || echo /usr/sbin/haproxy)}"
[ -x "$HAPROXY" ] || die "haproxy not found (looked for '$HAPROXY'): install the Debian package" \
  "with 'apt-get install haproxy' (scripts/install-deps.sh does), or set HAPROXY=/path/to/haproxy"
[ -n "$REDIS_URL" ] || command -v redis-server >/dev/null ||
  die "redis-server not found: apt-get install redis-server (or set PUSH_REDIS_URL)"
command -v curl >/dev/null || die "curl not found: apt-get install curl"

# ---- refuse busy ports ----------------------------------------------------------------------
# Gateways share a port on purpose (SO_REUSEPORT), so a second cluster on the same ports would
# not fail by itself: check that nothing answers on any port before starting anything.
for p in "${!port_user[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p, wanted for ${port_user[$p]}, is already in use (another cluster-local or" \
      "run-local?); stop what listens there or choose other ports with the variable named"
  fi
done

# ---- process bookkeeping: start, track by PID, stop exactly those ---------------------------
mkdir -p "$RUN_DIR"
declare -A name_of=() # pid -> name
order=()              # pids in start order

start() { # start NAME LOGFILE COMMAND...: in its own session, so Ctrl-C reaches only us
  local name="$1" log="$2"
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  name_of[$!]="$name"
  order+=("$!")
}

# True while PID is a live (not zombie) child of this script: never signal a recycled PID.
ours() {
  local stat rest state ppid
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  rest="${stat##*) }" # "STATE PPID ..."
  read -r state ppid _ <<<"$rest"
  [ "$ppid" = "$$" ] && [ "$state" != Z ]
}

stop_pids() { # stop_pids SECONDS PID...: SIGTERM, wait up to SECONDS, then SIGKILL
  local secs="$1" pid t
  shift
  for pid in "$@"; do
    if ours "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for ((t = 0; t < secs * 10; t++)); do
    local left=0
    for pid in "$@"; do ours "$pid" && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
  done
  for pid in "$@"; do
    if ours "$pid"; then
      say "${name_of[$pid]} (pid $pid) did not stop in ${secs}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

stopping=0
wrote_env=0
cleanup() {
  [ "$stopping" = 0 ] || return 0
  stopping=1
  trap - INT TERM HUP EXIT
  local pid redis_pid="" others=()
  for pid in "${order[@]}"; do
    ours "$pid" || continue
    if [ "${name_of[$pid]}" = redis ]; then redis_pid="$pid"; else others+=("$pid"); fi
  done
  [ "$wrote_env" = 0 ] || rm -f "$RUN_DIR/cluster.env" # never another run's file
  local n="${#others[@]}"
  [ -z "$redis_pid" ] || n=$((n + 1))
  [ "$n" -gt 0 ] || return 0
  say "stopping $n processes"
  # Gateways drain (pending batches out, clients closed with 1001) within --drain-ms (5 s);
  # Redis goes last so they can finish cleanly.
  [ "${#others[@]}" -eq 0 ] || stop_pids 10 "${others[@]}"
  [ -z "$redis_pid" ] || stop_pids 5 "$redis_pid"
  say "stopped"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP

alive() { ours "$1" || die "${name_of[$1]} (pid $1) exited at start; see $2"; }

wait_until() { # wait_until SECONDS PID LOG DESCRIPTION COMMAND...: poll COMMAND every 0.1 s
  local secs="$1" pid="$2" log="$3" what="$4" t
  shift 4
  for ((t = 0; t < secs * 10; t++)); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$pid" "$log"
    sleep 0.1
  done
  die "$what not ready after ${secs}s; see $log"
}

http_ok() { curl -fsS -o /dev/null --max-time 1 "$1"; }

# ---- Redis ----------------------------------------------------------------------------------
if [ -z "$REDIS_URL" ]; then
  start redis "$RUN_DIR/redis.log" redis-server "$root/redis/redis.conf" --port "$REDIS_PORT" \
    --dir "$RUN_DIR" --daemonize no
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  wait_until 10 "$!" "$RUN_DIR/redis.log" "Redis" redis-cli -p "$REDIS_PORT" ping
fi

# ---- gateways -------------------------------------------------------------------------------
gw_pids=()
for ((i = 0; i < N; i++)); do
  start "gateway$((i + 1))" "$RUN_DIR/gateway$((i + 1)).log" \
    "$GATEWAY" --listen "127.0.0.1:${GW_PORTS[i]}" --redis "$REDIS_URL"
  gw_pids+=("$!")
done
for ((i = 0; i < N; i++)); do
  wait_until 15 "${gw_pids[i]}" "$RUN_DIR/gateway$((i + 1)).log" "gateway$((i + 1)) (/readyz)" \
    http_ok "http://127.0.0.1:${GW_PORTS[i]}/readyz"
done

# ---- HTTP publisher -------------------------------------------------------------------------
start publisher "$RUN_DIR/publisher.log" \
  "$PUBLISH" serve --listen "127.0.0.1:$PUB_PORT" --redis "$REDIS_URL"
pub_pid=$!
wait_until 10 "$pub_pid" "$RUN_DIR/publisher.log" "HTTP publisher" \
  http_ok "http://127.0.0.1:$PUB_PORT/healthz"

# ---- HAProxy --------------------------------------------------------------------------------
servers=""
for ((i = 0; i < N; i++)); do
  servers+="    server gateway$((i + 1)) 127.0.0.1:${GW_PORTS[i]}"$'\n'
done
cfg="$(<"$root/haproxy/haproxy-local.cfg.in")"
cfg="${cfg//@LB_PORT@/$LB_PORT}"
cfg="${cfg//@STATS_PORT@/$STATS_PORT}"
cfg="${cfg//@SERVERS@/${servers%$'\n'}}"
printf '%s\n' "$cfg" >"$RUN_DIR/haproxy.cfg"
"$HAPROXY" -c -q -f "$RUN_DIR/haproxy.cfg" || die "generated $RUN_DIR/haproxy.cfg is invalid"
# -db: stay in the foreground (no daemon), so the PID we hold is HAProxy itself.
start haproxy "$RUN_DIR/haproxy.log" "$HAPROXY" -db -f "$RUN_DIR/haproxy.cfg"
lb_pid=$!
all_up() { # every gateway is UP in HAProxy's status CSV
  [ "$(curl -fsS --max-time 1 "http://127.0.0.1:$STATS_PORT/;csv" |
    awk -F, '$1 == "gateways" && $2 ~ /^gateway[0-9]+$/ && $18 == "UP"' | wc -l)" = "$N" ]
}
wait_until 15 "$lb_pid" "$RUN_DIR/haproxy.log" "HAProxy (all gateways UP)" all_up

# ---- ready ----------------------------------------------------------------------------------
{
  echo "LB_PORT=$LB_PORT"
  echo "STATS_PORT=$STATS_PORT"
  echo "PUBLISHER_PORT=$PUB_PORT"
  echo "REDIS_URL=$REDIS_URL"
  echo "GATEWAYS=$N"
  for pid in "${order[@]}"; do
    name="${name_of[$pid]}"
    echo "${name^^}_PID=$pid"
  done
  for ((i = 0; i < N; i++)); do echo "GATEWAY$((i + 1))_PORT=${GW_PORTS[i]}"; done
} >"$RUN_DIR/cluster.env"
wrote_env=1

gw_list=""
for ((i = 0; i < N; i++)); do
  gw_list+="    gateway$((i + 1))        http://127.0.0.1:${GW_PORTS[i]}/metrics   pid ${gw_pids[i]}   log $RUN_DIR/gateway$((i + 1)).log"$'\n'
done
cat >&2 <<MSG

  pushfabric cluster: $N gateways behind HAProxy

    demo page       http://127.0.0.1:$LB_PORT/
    WebSocket       ws://127.0.0.1:$LB_PORT/ws?channels=news
    HTTP publisher  curl -d '{"title":"hello"}' http://127.0.0.1:$PUB_PORT/publish/news
    CLI publisher   $PUBLISH --redis $REDIS_URL news 'hello'
    HAProxy status  http://127.0.0.1:$STATS_PORT/   (Prometheus: /metrics)
    Redis           $REDIS_URL
${gw_list}
  Logs, generated haproxy.cfg and cluster.env (ports, PIDs) are in $RUN_DIR.
  Stop a gateway with 'kill <pid>' to watch its clients move to the others.
  Ctrl-C stops everything this script started.

MSG
say "ready"

# ---- --check: one WebSocket through HAProxy receives one HTTP publish -----------------------
if [ "$check" = 1 ]; then
  ch="cluster-check-$$"
  out="$RUN_DIR/check.out"
  # curl does not speak WebSocket here, but it performs the upgrade handshake when given the
  # headers and then prints the raw frames; server frames are unmasked, so their JSON text
  # shows as is.
  curl -sSN -i --http1.1 --max-time 15 -o "$out" \
    -H "Connection: Upgrade" -H "Upgrade: websocket" -H "Sec-WebSocket-Version: 13" \
    -H "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==" \
    "http://127.0.0.1:$LB_PORT/ws?channels=$ch" &
  curl_pid=$!
  name_of[$curl_pid]="check client"
  order+=("$curl_pid")
  # shellcheck disable=SC2317  # called through wait_until
  subscribed() { grep -aq '"op":"subscribed"' "$out"; }
  wait_until 10 "$curl_pid" "$out" "WebSocket through HAProxy" subscribed
  grep -aq "^HTTP/1.1 101" "$out" || die "no 101 through HAProxy; see $out"
  reply="$(curl -fsS --max-time 5 -d '{"check":true}' "http://127.0.0.1:$PUB_PORT/publish/$ch")"
  [ "$reply" = '{"receivers":1}' ] || die "publish answered '$reply', wanted {\"receivers\":1}"
  # shellcheck disable=SC2317  # called through wait_until
  delivered() { grep -aqF "{\"channel\":\"$ch\",\"messages\":[{\"check\":true}]}" "$out"; }
  wait_until 10 "$curl_pid" "$out" "delivery through HAProxy" delivered
  for ((i = 0; i < N; i++)); do
    http_ok "http://127.0.0.1:${GW_PORTS[i]}/readyz" || die "gateway$((i + 1)) is not ready"
  done
  say "check passed: $N gateways UP in HAProxy, a WebSocket through HAProxy received a publish"
  exit 0
fi

# ---- run until stopped ----------------------------------------------------------------------
running=("${order[@]}")
while :; do
  rc=0
  exited=""
  wait -n -p exited "${running[@]}" || rc=$?
  [ -n "$exited" ] || continue
  name="${name_of[$exited]}"
  keep=()
  for pid in "${running[@]}"; do [ "$pid" = "$exited" ] || keep+=("$pid"); done
  running=("${keep[@]}")
  left=0
  for pid in "${running[@]}"; do [[ "${name_of[$pid]}" == gateway* ]] && left=$((left + 1)); done
  if [[ "$name" == gateway* ]] && [ "$left" -gt 0 ]; then
    say "$name (pid $exited) exited with status $rc; HAProxy sends its clients to the" \
      "$left gateways left (log: $RUN_DIR/$name.log)"
    continue
  fi
  say "$name (pid $exited) exited with status $rc; stopping the rest"
  exit 1
done

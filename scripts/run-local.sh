#!/usr/bin/env bash
# Installs, builds and runs a local fabric: Redis (a private one unless PUSH_REDIS_URL is set),
# one gateway on 127.0.0.1:8080 (demo page at /) and the HTTP publisher on 127.0.0.1:8081.
# Ctrl-C stops exactly the processes this script started.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

GATEWAY_LISTEN="${PUSH_LISTEN:-127.0.0.1:8080}"
PUBLISHER_LISTEN="${PUSH_PUBLISHER_LISTEN:-127.0.0.1:8081}"
REDIS_PORT="${PUSH_REDIS_PORT:-6390}"

scripts/install-deps.sh
scripts/build.sh

rundir="$root/run"
mkdir -p "$rundir"
pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "run-local: stopped" >&2
}
trap cleanup INT TERM EXIT

if [ -z "${PUSH_REDIS_URL:-}" ]; then
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    echo "run-local: port $REDIS_PORT is taken by another Redis; set PUSH_REDIS_PORT or PUSH_REDIS_URL" >&2
    exit 1
  fi
  redis-server "$root/redis/redis.conf" --port "$REDIS_PORT" --dir "$rundir" \
    --daemonize no --logfile "$rundir/redis.log" &
  pids+=($!)
  PUSH_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "run-local: private Redis on 127.0.0.1:$REDIS_PORT (log: run/redis.log)" >&2
fi

build/gateway/push-gateway --listen "$GATEWAY_LISTEN" --redis "$PUSH_REDIS_URL" &
pids+=($!)
build/publisher-cli/push-publish serve --listen "$PUBLISHER_LISTEN" --redis "$PUSH_REDIS_URL" &
pids+=($!)

sleep 0.5
cat >&2 <<MSG

  pushfabric is running:
    demo page       http://$GATEWAY_LISTEN/
    WebSocket       ws://$GATEWAY_LISTEN/ws?channels=news
    HTTP publisher  curl -d '{"title":"hello"}' http://$PUBLISHER_LISTEN/publish/news
    CLI publisher   build/publisher-cli/push-publish --redis $PUSH_REDIS_URL news 'hello'
    metrics         http://$GATEWAY_LISTEN/metrics
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
echo "run-local: a process exited; stopping the rest" >&2

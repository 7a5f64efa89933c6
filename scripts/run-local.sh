#!/usr/bin/env bash
# Installs, builds and runs a local fabric: Redis (a private one unless PUSH_REDIS_URL is set),
# one gateway on 127.0.0.1:8080 (demo page at /) and the HTTP publisher on 127.0.0.1:8081.
# Ctrl-C stops exactly the processes this script started (the gateway drains first).
# Environment: PUSH_REDIS_URL (use this Redis instead of a private one), PUSH_REDIS_PORT (private
# Redis port, default 6390), PUSH_LISTEN (gateway, default 127.0.0.1:8080),
# PUSH_PUBLISHER_LISTEN (HTTP publisher, default 127.0.0.1:8081).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

GATEWAY_LISTEN="${PUSH_LISTEN:-127.0.0.1:8080}"
PUBLISHER_LISTEN="${PUSH_PUBLISHER_LISTEN:-127.0.0.1:8081}"
REDIS_PORT="${PUSH_REDIS_PORT:-6390}"

scripts/install-deps.sh
scripts/build.sh

# Two gateways on one port would share it silently (SO_REUSEPORT is a feature): refuse here.
for hp in "$GATEWAY_LISTEN" "$PUBLISHER_LISTEN"; do
  if curl -s -o /dev/null --max-time 1 "http://$hp/healthz"; then
    echo "run-local: something already answers on $hp (another run-local?); stop it or set" \
         "PUSH_LISTEN / PUSH_PUBLISHER_LISTEN" >&2
    exit 1
  fi
done

rundir="$root/run"
mkdir -p "$rundir"
pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "run-local: stopped" >&2
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

if [ -z "${PUSH_REDIS_URL:-}" ]; then
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    echo "run-local: port $REDIS_PORT is taken by another Redis; set PUSH_REDIS_PORT or PUSH_REDIS_URL" >&2
    exit 1
  fi
  setsid redis-server "$root/redis/redis.conf" --port "$REDIS_PORT" --dir "$rundir" \
    --daemonize no --logfile "$rundir/redis.log" &
  pids+=($!)
  PUSH_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  echo "run-local: private Redis on 127.0.0.1:$REDIS_PORT (log: run/redis.log)" >&2
fi

# Each child gets its own session: Ctrl-C reaches only this script, whose cleanup then sends
# one SIGTERM, so the gateway drains (sends the pending batches, closes clients with 1001).
setsid build/gateway/push-gateway --listen "$GATEWAY_LISTEN" --redis "$PUSH_REDIS_URL" &
pids+=($!)
setsid build/publisher-cli/push-publish serve --listen "$PUBLISHER_LISTEN" --redis "$PUSH_REDIS_URL" &
pids+=($!)

sleep 0.5
cat >&2 <<MSG

  pushfabric is running:
    demo page       http://$GATEWAY_LISTEN/?pub=http://$PUBLISHER_LISTEN
    WebSocket       ws://$GATEWAY_LISTEN/ws?channels=news
    HTTP publisher  curl -d '{"title":"hello"}' http://$PUBLISHER_LISTEN/publish/news
    CLI publisher   build/publisher-cli/push-publish --redis $PUSH_REDIS_URL news 'hello'
    metrics         http://$GATEWAY_LISTEN/metrics
  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}" || true
echo "run-local: a process exited; stopping the rest" >&2

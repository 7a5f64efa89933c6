#!/usr/bin/env bash
# soak.sh - owns the soak test of bench/ (issue 3, "Proof"; not run in CI).
#
# Several push-gateway processes share ONE loopback port (SO_REUSEPORT) behind a private
# redis-server. loadgen processes hold CONNS WebSocket connections, each subscribed to SUBS of
# CHANNELS channels, close CHURN % of them per second with a normal close handshake (1000) and open
# replacements that subscribe again, and check every channel's sequence numbers on every
# connection. pubload publishes RATE msgs/s spread evenly over the CHANNELS channels, each channel
# with its own sequence (pubload --seq-per-channel), for DURATION seconds. Every SAMPLE_S seconds
# it records each gateway's VmRSS, open fds and pushfabric_connections (its own /metrics: a probe
# connection is mapped to the gateway process that accepted it, since all share the port).
# At the end: stop publishing, wait for delivery, stop the loadgens (final summaries with a tail
# check), wait for the gateways to drop every connection, compare fds with the baseline taken
# before any client, check Redis holds no subscription, SIGTERM the gateways (exit 0 expected),
# print a verdict and write a Markdown report.
#
# Verdict PASS needs: zero gaps, zero duplicates/reorders, tail check clean, no message before an
# ack, no unexpected close / EOF / reset, no handshake failure, every churn close answered with
# 1000, each gateway's RSS within +-RSS_TOL % between the first sample after WARMUP_S s of
# publishing and the last one, each gateway's fd count back to its baseline, no gateway died, all
# exit 0 on SIGTERM, no Redis subscription left.
#
# Environment (defaults):
#   BUILD=<repo>/build  GATEWAY=$BUILD/gateway/push-gateway  LOADGEN=$BUILD/bench/loadgen
#   PUBLOAD=$BUILD/bench/pubload  REDIS_SERVER=redis-server
#   CONNS=15000  LOADGENS=ceil(CONNS/5000) (each <= 14000)  GATEWAYS=3  GW_THREADS=1
#   MERGE_MS=1000  CHANNELS=100  SUBS=2 (channels per connection)  RATE=1000 (msgs/s, total)
#   SIZE=64 (payload bytes)  CHURN=10 (% of connections per second)  SUB_MODE=mixed (url|op|mixed)
#   DURATION=600 (s of publishing)  SAMPLE_S=10  WARMUP_S=60  RSS_TOL=10 (%)  SRC_IPS=32
#   CONNECT_MAX=180 (s to reach 99 % subscribed)  OUT=$WORK/report.md  KEEP=0 (1 keeps $WORK)
# Loopback only. Every process it starts is stopped by PID on exit (trap); SIGKILL after 5 s.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${BUILD:-$ROOT/build}"
GATEWAY="${GATEWAY:-$BUILD/gateway/push-gateway}"
LOADGEN="${LOADGEN:-$BUILD/bench/loadgen}"
PUBLOAD="${PUBLOAD:-$BUILD/bench/pubload}"
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
CONNS="${CONNS:-15000}"
LOADGENS="${LOADGENS:-$(((CONNS + 4999) / 5000))}"
GATEWAYS="${GATEWAYS:-3}"
GW_THREADS="${GW_THREADS:-1}"
MERGE_MS="${MERGE_MS:-1000}"
CHANNELS="${CHANNELS:-100}"
SUBS="${SUBS:-2}"
RATE="${RATE:-1000}"
SIZE="${SIZE:-64}"
CHURN="${CHURN:-10}"
SUB_MODE="${SUB_MODE:-mixed}"
DURATION="${DURATION:-600}"
SAMPLE_S="${SAMPLE_S:-10}"
WARMUP_S="${WARMUP_S:-60}"
RSS_TOL="${RSS_TOL:-10}"
SRC_IPS="${SRC_IPS:-32}"
CONNECT_MAX="${CONNECT_MAX:-180}"
KEEP="${KEEP:-0}"

die() { echo "soak: $*" >&2; exit 2; }
log() { echo "soak: [$(date +%H:%M:%S)] $*" >&2; }

for b in "$GATEWAY" "$LOADGEN" "$PUBLOAD"; do
  [ -x "$b" ] || die "$b not built (cmake -S . -B build && cmake --build build)"
done
command -v "$REDIS_SERVER" >/dev/null || die "redis-server missing"
for t in python3 redis-cli ss; do command -v "$t" >/dev/null || die "$t missing"; done
[ "$LOADGENS" -ge 1 ] && [ "$GATEWAYS" -ge 1 ] && [ "$CONNS" -ge "$LOADGENS" ] || die "bad CONNS/LOADGENS/GATEWAYS"
[ $(((CONNS + LOADGENS - 1) / LOADGENS)) -le 14000 ] || die "more than 14000 connections per loadgen: raise LOADGENS"
[ "$SRC_IPS" -ge 1 ] || die "SRC_IPS must be >= 1 (the metrics probe tells its own connections by 127.0.0.1)"
GATEWAY="$(realpath "$GATEWAY")" LOADGEN="$(realpath "$LOADGEN")" PUBLOAD="$(realpath "$PUBLOAD")"

WORK="$(mktemp -d /tmp/pf-soak.XXXXXX)"
OUT="$(realpath -m "${OUT:-$WORK/report.md}")"
PIDS=()
NOTES=""
cd "$WORK"

alive() { # running and not a zombie
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$st" ] && [ "$st" != Z ]
}

# SIGTERMs the given PIDs (ours), SIGKILLs what is still alive 5 s later (noted in the report).
stop_pids() {
  local p q i
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    q=0
    for p in "$@"; do alive "$p" && q=1; done
    [ "$q" = 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do
    if alive "$p"; then
      NOTES+="- pid $p ($(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80)): alive 5 s after SIGTERM, SIGKILLed\n"
      kill -9 "$p" 2>/dev/null || true
    fi
  done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

cleanup() {
  local p live=()
  for p in "${PIDS[@]}"; do alive "$p" && live+=("$p"); done
  [ "${#live[@]}" -gt 0 ] && stop_pids "${live[@]}"
  if [ "$KEEP" = 1 ]; then echo "soak: work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port below the ephemeral range that nobody listens on. SO_REUSEPORT would let a
# gateway join another user's group on a busy port, so this is checked again after the start.
pick_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    [ -z "$(ss -Htln "sport = :$p")" ] && [ -z "$(ss -Htan "sport = :$p")" ] && { echo "$p"; return 0; }
  done
  return 1
}

listeners_of() { # pids holding a listening socket on port $1
  ss -Htlnp "sport = :$1" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# ---- Redis ------------------------------------------------------------------------------------
for _ in 1 2 3; do
  RPORT="$(pick_port)" || die "no free port"
  "$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --protected-mode yes \
    --dir "$WORK" --logfile "$WORK/redis.log" --maxclients 1000 &
  RPID=$!
  PIDS+=("$RPID")
  for ((i = 0; i < 50; i++)); do
    redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  if alive "$RPID" && [ "$(listeners_of "$RPORT")" = "$RPID" ]; then break; fi
  stop_pids "$RPID"
  RPID=""
done
[ -n "$RPID" ] || die "redis-server did not start (see $WORK/redis.log)"
log "redis-server pid $RPID on 127.0.0.1:$RPORT"

# ---- gateways -----------------------------------------------------------------------------------
GPORT="$(pick_port)" || die "no free port"
GW_PIDS=()
for ((g = 0; g < GATEWAYS; g++)); do
  "$GATEWAY" --listen "127.0.0.1:$GPORT" --redis "redis://127.0.0.1:$RPORT" --threads "$GW_THREADS" \
    --merge-ms "$MERGE_MS" >"$WORK/gw$g.log" 2>&1 &
  GW_PIDS+=("$!")
  PIDS+=("$!")
done
for ((i = 0; i < 100; i++)); do
  [ "$(listeners_of "$GPORT" | wc -l)" -ge "$GATEWAYS" ] && break
  sleep 0.1
done
want="$(printf '%s\n' "${GW_PIDS[@]}" | sort -u)"
[ "$(listeners_of "$GPORT")" = "$want" ] || die "port $GPORT: listeners $(listeners_of "$GPORT" | tr '\n' ' ')but ours are ${GW_PIDS[*]}"
for ((i = 0; i < 50; i++)); do
  [ "$(grep -l 'redis link up' "$WORK"/gw*.log 2>/dev/null | wc -l)" -ge "$GATEWAYS" ] && break
  sleep 0.1
done
log "gateways ${GW_PIDS[*]} on 127.0.0.1:$GPORT (threads $GW_THREADS, merge-ms $MERGE_MS)"

# ---- per-gateway metrics probe and sampling ----------------------------------------------------------
cat >"$WORK/probe.py" <<'EOF'
# probe.py PORT PID... -> one line per PID: "pid connections" (pushfabric_connections summed over
# shards, from that process's own /metrics; -1 if it could not be reached). All gateways share
# PORT, so each probe connection (from 127.0.0.1; loadgens use 127.0.0.2+) is mapped to the
# process that accepted it through its socket inode (ss -e + /proc/PID/fd).
import os, re, socket, subprocess, sys, time
port, pids = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
got = {}
for _round in range(6):
    socks = []
    for _ in range(4 * len(pids)):
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        socks.append(s)
    time.sleep(0.05)
    by_port = {s.getsockname()[1]: s for s in socks}
    out = subprocess.run(["ss", "-Htne", "state", "established", f"( sport = :{port} and dst 127.0.0.1 )"],
                         capture_output=True, text=True).stdout
    ino_to_sock = {}
    for line in out.splitlines():
        m, f = re.search(r"ino:(\d+)", line), line.split()
        if len(f) >= 4 and m:
            peer = int(f[3].rsplit(":", 1)[1])
            if peer in by_port:
                ino_to_sock[m.group(1)] = by_port[peer]
    owner = {}
    for pid in pids:
        if pid in got:
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    l = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if l.startswith("socket:[") and l[8:-1] in ino_to_sock:
                    owner.setdefault(pid, ino_to_sock[l[8:-1]])
        except OSError:
            pass
    for pid, s in owner.items():
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data, t_end = b"", time.time() + 3
            while time.time() < t_end:
                c = s.recv(65536)
                if not c:
                    break
                data += c
                h = data.find(b"\r\n\r\n")
                m = re.search(rb"[Cc]ontent-[Ll]ength:\s*(\d+)", data[:h]) if h >= 0 else None
                if m and len(data) >= h + 4 + int(m.group(1)):
                    break
            vals = re.findall(rb"^pushfabric_connections\{[^}]*\} (\d+)", data, re.M)
            if vals:
                got[pid] = sum(int(v) for v in vals)
        except OSError:
            pass
    for s in socks:
        s.close()
    if len(got) == len(pids):
        break
for pid in pids:
    print(pid, got.get(pid, -1))
EOF

# samples.tsv: label t_s then per gateway "rss fds conns", then loadgen totals.
declare -A GCONN
sample_gw() { # label t_s -> appends a line to gw_samples.tsv (fds counted before the probe)
  local line="$1 $2" p c
  declare -A rf
  for p in "${GW_PIDS[@]}"; do rf[$p]="$(rss_kib "$p") $(nfds "$p")"; done
  GCONN=()
  while read -r p c; do GCONN[$p]=$c; done < <(python3 "$WORK/probe.py" "$GPORT" "${GW_PIDS[@]}" 2>/dev/null || true)
  for p in "${GW_PIDS[@]}"; do
    if alive "$p"; then line+=" ${rf[$p]} ${GCONN[$p]:--1}"; else line+=" 0 0 dead"; fi
  done
  echo "$line" >>"$WORK/gw_samples.tsv"
}

LG_PIDS=()
declare -a LG_SNAP
lg_snap() { # SIGUSR2 every loadgen and wait until each --out carries the new snapshot
  local i n line
  for ((i = 0; i < ${#LG_PIDS[@]}; i++)); do
    LG_SNAP[i]=$((LG_SNAP[i] + 1))
    kill -USR2 "${LG_PIDS[i]}" 2>/dev/null || true
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
lg_totals() { # prints "subscribed messages gaps dups lost closes_sent handshake_errors"
  python3 - "$WORK" "${#LG_PIDS[@]}" <<'EOF' || echo "0 0 0 0 0 0 0"
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
t = [0] * 7
for i in range(n):
    try:
        d = json.load(open(f"{work}/lg{i}.json"))
    except (OSError, ValueError):
        continue
    s = d.get("soak", {})
    t = [a + b for a, b in zip(t, [d["subscribed_now"], d["messages"], s["seq"]["gaps"], s["seq"]["dups"],
                                   s["churn"]["lost"], s["churn"]["close_sent"], d["errors"]["handshake"]])]
print(*t)
EOF
}

sleep 1
sample_gw base 0
log "baseline: $(tail -1 "$WORK/gw_samples.tsv")"

# ---- loadgens ---------------------------------------------------------------------------------------
LG_DURATION=$((CONNECT_MAX + DURATION + 600))
off=0
for ((i = 0; i < LOADGENS; i++)); do
  n=$(((CONNS * (i + 1)) / LOADGENS - (CONNS * i) / LOADGENS))
  "$LOADGEN" --port "$GPORT" -n "$n" --src-ips "$SRC_IPS" --max-pending 500 --duration "$LG_DURATION" \
    --channels "$CHANNELS" --subs "$SUBS" --conn-offset "$off" --sub-mode "$SUB_MODE" --churn "$CHURN" \
    --check-seq --expect-last "$WORK/pub.json" --out "$WORK/lg$i.json" --quiet >"$WORK/lg$i.final" 2>"$WORK/lg$i.err" &
  LG_PIDS+=("$!")
  PIDS+=("$!")
  LG_SNAP[i]=0
  off=$((off + n))
done
log "loadgens ${LG_PIDS[*]}: $CONNS connections, $SUBS of $CHANNELS channels each, churn $CHURN %/s, sub-mode $SUB_MODE"
t_conn0=$SECONDS
while :; do
  sleep 2
  lg_snap
  read -r sub _ <<<"$(lg_totals)"
  [ "$sub" -ge $((CONNS * 99 / 100)) ] && break
  [ $((SECONDS - t_conn0)) -ge "$CONNECT_MAX" ] && { NOTES+="- only $sub of $CONNS connections subscribed after ${CONNECT_MAX} s\n"; break; }
done
CONNECT_S=$((SECONDS - t_conn0))
log "$sub subscribed after ${CONNECT_S} s"
sample_gw connected 0

# ---- publishing ---------------------------------------------------------------------------------------
"$PUBLOAD" --redis-port "$RPORT" --channels "$CHANNELS" --rate "$RATE" --size "$SIZE" --duration "$DURATION" \
  --seq-per-channel --out "$WORK/pub.json" --quiet >"$WORK/pub.final" 2>"$WORK/pub.err" &
PUB_PID=$!
PIDS+=("$PUB_PID")
t_pub0=$SECONDS
log "pubload $PUB_PID: $RATE msgs/s over $CHANNELS channels for $DURATION s"
echo "t_s subscribed messages gaps dups lost churn_closes hs_errors" >"$WORK/lg_samples.tsv"
next=$((t_pub0 + SAMPLE_S))
while alive "$PUB_PID"; do
  if [ "$SECONDS" -ge "$next" ]; then
    t=$((SECONDS - t_pub0))
    sample_gw run "$t"
    lg_snap
    echo "$t $(lg_totals)" >>"$WORK/lg_samples.tsv"
    log "t=${t}s gw(rss fds conns): $(tail -1 "$WORK/gw_samples.tsv" | cut -d' ' -f3-) | lg: $(tail -1 "$WORK/lg_samples.tsv" | cut -d' ' -f2-)"
    next=$((next + SAMPLE_S))
  fi
  for p in "${GW_PIDS[@]}"; do alive "$p" || { NOTES+="- gateway $p died during the run\n"; kill "$PUB_PID" 2>/dev/null || true; }; done
  sleep 1
done
wait "$PUB_PID" || NOTES+="- pubload exited non-zero\n"
PUB_S=$((SECONDS - t_pub0))

# ---- drain and stop the clients ------------------------------------------------------------------------
DRAIN_S=$((MERGE_MS / 1000 + 4))
log "publishing done ($PUB_S s); waiting ${DRAIN_S} s for delivery"
sleep "$DRAIN_S"
sample_gw drained "$((SECONDS - t_pub0))"
for p in "${LG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for ((i = 0; i < 300; i++)); do
  q=0
  for p in "${LG_PIDS[@]}"; do alive "$p" && q=1; done
  [ "$q" = 0 ] && break
  sleep 0.1
done
for ((i = 0; i < LOADGENS; i++)); do
  wait "${LG_PIDS[i]}" || NOTES+="- loadgen $i exited non-zero\n"
done
log "loadgens stopped; waiting for the gateways to drop every connection"
for ((i = 0; i < 60; i++)); do
  sample_gw after "$((SECONDS - t_pub0))"
  c=0
  for p in "${GW_PIDS[@]}"; do [ "${GCONN[$p]:--1}" = 0 ] || c=1; done
  [ "$c" = 0 ] && break
  sleep 1
done
sleep 2
sample_gw after "$((SECONDS - t_pub0))"
redis-cli -p "$RPORT" pubsub channels '*' >"$WORK/redis_channels.txt" 2>&1 || true
redis-cli -p "$RPORT" info clients >"$WORK/redis_clients.txt" 2>&1 || true

# ---- stop the gateways ------------------------------------------------------------------------------------
GW_EXIT=""
for p in "${GW_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${GW_PIDS[@]}"; do
  rc=0
  timeout 10 tail --pid="$p" -f /dev/null 2>/dev/null || true
  if alive "$p"; then kill -9 "$p" 2>/dev/null || true; NOTES+="- gateway $p alive 10 s after SIGTERM: SIGKILLed\n"; fi
  wait "$p" || rc=$?
  GW_EXIT+="$rc "
done
stop_pids "$RPID"

# ---- verdict and report ------------------------------------------------------------------------------------------
export CONNS LOADGENS GATEWAYS GW_THREADS MERGE_MS CHANNELS SUBS RATE SIZE CHURN SUB_MODE DURATION SAMPLE_S \
  WARMUP_S RSS_TOL SRC_IPS CONNECT_S PUB_S GW_EXIT NOTES GPORT RPORT
export GW_PIDS_S="${GW_PIDS[*]}"
CMDLINE="$(for v in CONNS LOADGENS GATEWAYS GW_THREADS MERGE_MS CHANNELS SUBS RATE CHURN DURATION; do printf '%s=%s ' "$v" "${!v}"; done)bench/soak.sh"
export CMDLINE
set +e
python3 - "$WORK" "$OUT" <<'EOF'
import json, os, sys
work, out = sys.argv[1], sys.argv[2]
E = os.environ
ng = int(E["GATEWAYS"]); gpids = E["GW_PIDS_S"].split()
nl = int(E["LOADGENS"])
rows = []
for line in open(f"{work}/gw_samples.tsv"):
    f = line.split()
    rows.append((f[0], int(f[1]), [f[2 + 3 * g: 5 + 3 * g] for g in range(ng)]))
def num(x):
    try: return int(x)
    except ValueError: return -1
base = rows[0]
run = [r for r in rows if r[0] == "run"]
after = [r for r in rows if r[0] == "after"][-1]
warm = [r for r in run if r[1] >= int(E["WARMUP_S"])]
docs = []
for i in range(nl):
    try:
        docs.append(json.load(open(f"{work}/lg{i}.final")))
    except (OSError, ValueError):
        try: docs.append(json.load(open(f"{work}/lg{i}.json")))
        except (OSError, ValueError): docs.append(None)
try:
    pub = json.load(open(f"{work}/pub.json"))
except (OSError, ValueError):
    pub = None
S = lambda f: sum(f(d) for d in docs if d)
seq = lambda k: S(lambda d: d["soak"]["seq"][k])
churn = lambda k: S(lambda d: d["soak"]["churn"][k])
err = lambda k: S(lambda d: d["errors"][k])
closes = {}
for d in docs:
    if d:
        for k, v in d["closes"].items(): closes[k] = closes.get(k, 0) + v
fails = []
if any(d is None or not d.get("final") for d in docs): fails.append("a loadgen wrote no final summary")
if pub is None or not pub.get("ok"): fails.append("pubload failed or wrote no summary")
for k in ["gaps", "dups", "wrong_channel", "unknown_channel", "pre_ack", "parse_errors", "tail_missing", "tail_none"]:
    if seq(k): fails.append(f"{k} = {seq(k)}")
if seq("checked") == 0: fails.append("no message checked")
if churn("lost"): fails.append(f"unexpected closes/EOF/resets = {churn('lost')}")
if churn("close_timeouts"): fails.append(f"close handshakes timed out = {churn('close_timeouts')}")
if churn("close_reset"): fails.append(f"close handshakes ended by a reset instead of EOF = {churn('close_reset')}")
if churn("close_reply_bad_code"): fails.append(f"close replies not 1000 = {churn('close_reply_bad_code')}")
for k in ["handshake", "connect", "socket", "protocol", "reset"]:
    if err(k): fails.append(f"loadgen {k} errors = {err(k)}")
drift = []
for g in range(ng):
    if len(warm) >= 2:
        a, b = num(warm[0][2][g][0]), num(warm[-1][2][g][0])
        dr = 100.0 * (b - a) / a if a > 0 else float("nan")
        drift.append((a, b, dr))
        if not abs(dr) <= float(E["RSS_TOL"]): fails.append(f"gateway {g} RSS drift {dr:+.1f} %")
    else:
        drift.append((0, 0, float("nan"))); fails.append("too few samples after warm-up for the RSS check")
    if num(after[2][g][1]) != num(base[2][g][1]): fails.append(f"gateway {g} fds {base[2][g][1]} before, {after[2][g][1]} after")
    if after[2][g][2] != "0": fails.append(f"gateway {g} still reports {after[2][g][2]} connections")
    if any(r[2][g][2] == "dead" for r in rows): fails.append(f"gateway {g} died")
ex = E["GW_EXIT"].split()
if any(x != "0" for x in ex): fails.append(f"gateway exit codes {' '.join(ex)}")
left = [l for l in open(f"{work}/redis_channels.txt").read().split() if l]
if left: fails.append(f"Redis still has {len(left)} subscribed channels")
if E["NOTES"].strip(): fails.append("notes (see below)")
verdict = "PASS" if not fails else "FAIL"

L = []
p = L.append
p(f"# Soak result: {verdict}\n")
p(f"Command: `{E['CMDLINE']}` (SUBS={E['SUBS']} SUB_MODE={E['SUB_MODE']} SIZE={E['SIZE']} SRC_IPS={E['SRC_IPS']})\n")
p(f"{ng} gateways (pids {E['GW_PIDS_S']}, `--threads {E['GW_THREADS']} --merge-ms {E['MERGE_MS']}`) on one port "
  f"(SO_REUSEPORT), {nl} loadgen processes, pubload, one redis-server; loopback.\n")
p("## Figures\n")
p("| what | value |\n|---|---|")
hs = S(lambda d: d["handshakes"])
p(f"| connections held | {E['CONNS']} ({S(lambda d: d['subscribed_peak'])} subscribed at peak; all subscribed after {E['CONNECT_S']} s) |")
p(f"| connections opened (handshakes) | {hs} |")
p(f"| churn closes sent (1000) / answered 1000 / then EOF / then reset / timeouts | {churn('close_sent')} / {churn('close_replies') - churn('close_reply_bad_code')} / {churn('closed_clean')} / {churn('close_reset')} / {churn('close_timeouts')} |")
p(f"| replacement connections opened | {churn('reopened')} |")
p(f"| unexpected closes (close frame / EOF / reset from the gateway) | {churn('lost')} {json.dumps(closes) if closes else ''} |")
p(f"| loadgen errors socket/connect/handshake/reset/eof/protocol/send | " + "/".join(str(err(k)) for k in ["socket", "connect", "handshake", "reset", "eof", "protocol", "send"]) + " |")
if pub:
    p(f"| messages published | {pub['sent']} in {pub['elapsed_s']:.1f} s ({pub['rate']:.1f}/s) over {pub['channels']} channels; PUBLISH receivers/msg {pub['receivers_per_msg']:.2f}; late steps {pub['late_steps']} |")
p(f"| messages delivered to clients (all checked) | {S(lambda d: d['messages'])} ({seq('checked')} sequence-checked) |")
p(f"| **gaps** (missing seqs between two received) | **{seq('gaps')}** ({seq('gap_events')} events) |")
p(f"| **duplicates / reorders** | **{seq('dups')}** |")
p(f"| wrong channel / unknown channel / batch before ack / unparsable | {seq('wrong_channel')} / {seq('unknown_channel')} / {seq('pre_ack')} / {seq('parse_errors')} |")
p(f"| tail check: (connection, channel) pairs acked before the channel's last publish | {seq('tail_checked')}: {seq('tail_ok')} had the last seq, {seq('tail_missing')} seqs missing, {seq('tail_none')} saw nothing |")
lat = [d["latency_ms"] for d in docs if d]
if lat:
    p(f"| latency publish→receive (max over loadgens) | p50 {max(x['p50'] for x in lat):.0f} ms, p99 {max(x['p99'] for x in lat):.0f} ms, max {max(x['max'] for x in lat):.0f} ms (merge window {E['MERGE_MS']} ms) |")
p("")
p("## Gateways: RSS (KiB), open fds, pushfabric_connections\n")
p("| sample | t (s after publishing began) | " + " | ".join(f"gw{g} RSS / fds / conns" for g in range(ng)) + " |")
p("|---|---|" + "---|" * ng)
for r in rows:
    p(f"| {r[0]} | {r[1]} | " + " | ".join(" / ".join(x) for x in r[2]) + " |")
p("")
p(f"RSS drift after warm-up (first sample ≥ {E['WARMUP_S']} s vs last sample while publishing; limit ±{E['RSS_TOL']} %):\n")
for g, (a, b, dr) in enumerate(drift):
    p(f"- gw{g}: {a} → {b} KiB ({dr:+.1f} %)")
p("")
p("fds: " + "; ".join(f"gw{g} {base[2][g][1]} before any client, {after[2][g][1]} after all left" for g in range(ng)) + ".")
p(f"Gateway exit codes on SIGTERM: {E['GW_EXIT'].strip()}. Redis channels left subscribed: {len(left)}.\n")
p("## Verdict\n")
p(f"**{verdict}**" + ("" if not fails else ": " + "; ".join(fails)))
if E["NOTES"].strip():
    p("\nNotes:\n\n" + E["NOTES"].replace("\\n", "\n"))
text = "\n".join(L) + "\n"
open(out, "w").write(text)
print(text)
sys.exit(0 if verdict == "PASS" else 1)
EOF
rc=$?
set -e
log "report: $OUT"
exit "$rc"

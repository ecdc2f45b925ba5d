#!/usr/bin/env bash
# The cluster benchmark (issue "Beyond one machine"): ai-messages per second and
# client-observed p50/p99 with 1, 2 and 3 engram nodes on one PostgreSQL and one Redis,
# all on this machine (so the nodes, PostgreSQL, Redis, the fake model and the load
# generators share its cores: read the scaling with that in mind), plus a single node
# without Redis as the baseline; then the extra latency the Redis fan-out adds to an
# emit (bench/cluster_fanout.mjs).
#
#   bench/cluster.sh [CONNS=60] [DURATION=10] [USERS=10] [MEMORIES=200] [ROUNDS=2]
# Reports per configuration: ai-messages/s (sum over nodes), p50/p99 (worst node) and
# the engram processes' CPU microseconds per ai-message (utime+stime, all nodes), which
# is the figure to trust when other work shares the machine.
# Expects `make build` (or ENGRAM_BUILD). Own PostgreSQL and Redis on free ports (via
# scripts/services.sh); every process is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${ENGRAM_BUILD:-build}
CONNS=${CONNS:-60}; DURATION=${DURATION:-10}; USERS=${USERS:-10}; MEMORIES=${MEMORIES:-200}
SECRET=bench-cluster-secret-0123456789abcdef
work=$(mktemp -d /tmp/engram-cluster.XXXXXX)
chmod 755 "$work"
export ENGRAM_SERVICES_ENV=$work/services.env
pids=()
stop_nodes() { for p in "${nodes[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; nodes=(); }
cleanup() {
  stop_nodes || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  scripts/services.sh stop "$work/services" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

scripts/services.sh start "$work/services" >/dev/null
. "$work/services.env"
PG=$ENGRAM_TEST_PG; REDIS=$ENGRAM_TEST_REDIS
echo "cluster: PostgreSQL $PG, Redis $REDIS; prefilling $USERS users x $MEMORIES memories"
"$B/chat_prefill" --db "$PG" --users "$USERS" --chats $(( (CONNS + USERS - 1) / USERS )) \
  --memories "$MEMORIES" --out "$work/pairs" 2>&1 | tail -1

"$B/fake_model" 0 >"$work/fake.out" & pids+=($!)
for _ in $(seq 50); do grep -q PORT= "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
fport=$(sed -n 's/^PORT=//p' "$work/fake.out")

nodes=(); ports=()
start_nodes() { # N REDIS_URL
  ports=()
  for i in $(seq "$1"); do
    local p; p=$(free_port); ports+=("$p")
    mkdir -p "$work/n$i"
    PORT=$p ENGRAM_DB="$PG" ENGRAM_DATA_DIR="$work/n$i" JWT_SECRET=$SECRET ENGRAM_REDIS_URL="$2" \
      ENGRAM_LLM=openai OPENAI_BASE_URL="http://127.0.0.1:$fport/v1" ENGRAM_LLM_MODEL=fake \
      ENGRAM_RATE_MESSAGES=0 ENGRAM_LOG_LEVEL=warn "$B/engram" 2>"$work/n$i.log" & nodes+=($!)
  done
  for p in "${ports[@]}"; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
  done
}

run() { # LABEL N REDIS_URL
  start_nodes "$2" "$3"
  local per=$(( CONNS / $2 )) i=0 lp=()
  local np=("${nodes[@]}")
  # Each load generator takes its own slice of the pairs (distinct chats per node). Users
  # pinned (default, what nginx's ip_hash does to one person's tabs): all of a user's
  # chats on one node. SPREAD=1: every user on every node (the worst case: each message
  # is delivered to the user's sockets on the other nodes and makes their index stale).
  for p in "${ports[@]}"; do
    if [ "${SPREAD:-0}" = 1 ]; then
      awk -v n="$2" -v i="$i" 'NR % n == i' "$work/pairs" >"$work/pairs.$i"
    else
      awk -v n="$2" -v i="$i" '!($1 in u) { u[$1] = k++ } u[$1] % n == i' "$work/pairs" >"$work/pairs.$i"
    fi
    "$B/chatload" --port "$p" --pairs "$work/pairs.$i" --secret "$SECRET" --conns "$per" \
      --warmup 3 --duration "$DURATION" --server-pid "${np[$i]}" >"$work/load.$i" 2>&1 & lp+=($!)
    i=$((i + 1))
  done
  for p in "${lp[@]}"; do wait "$p"; done
  /usr/bin/python3 - "$1" "$work"/load.* <<'PY'
import re, sys
rate = 0.0; p50 = 0; p99 = 0; err = 0; n = 0; cpu = 0.0
for f in sys.argv[2:]:
    m = re.search(r"^RESULT conns=(\d+) rate=([\d.]+) p50_us=(\d+) p99_us=(\d+) errors=(\d+) cpu_us_per_msg=([\d.]+)", open(f).read(), re.M)
    if not m:
        print(open(f).read()); continue
    n += int(m.group(1)); rate += float(m.group(2)); p50 = max(p50, int(m.group(3)))
    p99 = max(p99, int(m.group(4))); err += int(m.group(5)); cpu += float(m.group(6)) * float(m.group(2))
cpu = cpu / rate if rate else 0
print(f"cluster: {sys.argv[1]:<26} conns={n:<3} {rate:7.1f} msg/s  p50 {p50/1000:7.1f} ms  p99 {p99/1000:7.1f} ms  engram CPU {cpu:6.0f} us/msg  errors {err}")
PY
  rm -f "$work"/load.*
  stop_nodes
}

echo "cluster: $CONNS connections (each its own chat), users $([ "${SPREAD:-0}" = 1 ] && echo "spread over all nodes" || echo "pinned to one node each"), ${DURATION}s per run, $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Interleaved rounds: other load on the machine drifts, so each configuration is measured
# ROUNDS times, spread over the whole run.
for round in $(seq "${ROUNDS:-2}"); do
  run "1 node, no Redis" 1 ""
  run "1 node + Redis" 1 "$REDIS?key=bench"
  run "1 node + Redis, no lock" 1 "$REDIS?key=bench&lock=0"
  run "2 nodes + Redis" 2 "$REDIS?key=bench"
  run "3 nodes + Redis" 3 "$REDIS?key=bench"
done

start_nodes 2 "$REDIS?key=bench"
ENGRAM_BUILD=$B node bench/cluster_fanout.mjs "http://127.0.0.1:${ports[0]}" "http://127.0.0.1:${ports[1]}" "$SECRET" \
  "$(head -1 "$work/pairs")"
stop_nodes
echo "cluster: load after: $(cut -d' ' -f1-3 /proc/loadavg)"

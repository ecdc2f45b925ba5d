#!/usr/bin/env bash
# bench/transport.sh: the transport benchmark. Measures, under the same loads,
#   - engram      ($B/engram: Socket.IO `echo` with an ack),
#   - node        (bench/node-echo.mjs: socket.io 4.8 from node_modules, the same handler),
#   - floor       ($B/floor_server: one-thread epoll read-then-write echo, driven by the
#                  load generator in raw TCP mode with the same connection count and a
#                  message the size of the Socket.IO request frame),
# and prints one table: server CPU microseconds per round trip, round trips per second,
# latency p50/p99, RSS per idle connection, connections held, and the ratios engram/floor
# and node/engram. Builds nothing (run `make build` first); all traffic on 127.0.0.1.
#
# Knobs (environment):
#   ENGRAM_BUILD  build folder (default build)
#   SERVERS       which servers, in order (default "floor engram node"; also "echo-server":
#                 the reference test server, event message-with-ack, heartbeat 25 s/20 s)
#   CONNS         echo connection counts (default "100 1000"); INFLIGHT (1); SIZE (32 bytes
#                 of data per message); WARMUP (3 s); DURATION (10 s)
#   IDLE_CONNS    connections for the RSS measurement (10000); SETTLE (3 s)
#   HELD_CONNS    connections to hold without error (19000); HOLD (30 s, > pingInterval 25 s)
#   SKIP_IDLE=1   only the echo runs
#   ENGRAM_TOKEN  a JWT to send as the `token` cookie (else the script registers a user
#                 through the REST API if engram serves it; without REST, none is sent)
#   OUT           also append the table to this file
#   NICE          run servers and load generator at this nice level (e.g. -10, needs root)
#                 so that other work on a shared machine disturbs the figures less
#
# Every run is bounded (timeout); servers are stopped on exit, whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${ENGRAM_BUILD:-build}
case $B in /*) ;; *) B=$ROOT/$B ;; esac
SERVERS=${SERVERS:-floor engram node}
CONNS=${CONNS:-100 1000}
INFLIGHT=${INFLIGHT:-1}
SIZE=${SIZE:-32}
WARMUP=${WARMUP:-3}
DURATION=${DURATION:-10}
IDLE_CONNS=${IDLE_CONNS:-10000}
HELD_CONNS=${HELD_CONNS:-19000}
SETTLE=${SETTLE:-3}
HOLD=${HOLD:-30}
# The raw TCP message for the floor: the size of the Socket.IO request frame
# (2-byte header + 4-byte mask + `42` + ack id + `["echo","` + data + `"]`).
FLOOR_SIZE=$((SIZE + 20))
NICE_CMD=
[ -n "${NICE:-}" ] && NICE_CMD="nice -n $NICE"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
LG=$B/loadgen
for f in "$LG" "$B/floor_server"; do
  [ -x "$f" ] || { echo "transport.sh: $f missing: run 'make build' first" >&2; exit 1; }
done

TMP=$(mktemp -d /tmp/engram-bench.XXXXXX)
SRV_PID=
cleanup() {
  if [ -n "$SRV_PID" ]; then kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port, seconds
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  return 1
}

declare -A R # R[server:test:key] = value
declare -A NOTE

# start_server NAME: sets SRV_PID and PORT, or returns 1.
start_server() {
  local name=$1
  PORT=$(free_port)
  case $name in
    floor) $NICE_CMD "$B/floor_server" --port "$PORT" >"$TMP/$name.log" 2>&1 & ;;
    engram)
      [ -x "$B/engram" ] || { NOTE[$name]="not built"; return 1; }
      # A fresh data folder for every start (the benchmark user is registered anew).
      rm -rf "$TMP/data"
      mkdir -p "$TMP/data"
      PORT=$PORT ENGRAM_DATA_DIR=$TMP/data ENGRAM_LOG_LEVEL=warn \
        $NICE_CMD "$B/engram" serve >"$TMP/$name.log" 2>&1 & ;;
    echo-server)
      [ -x "$B/echo-server" ] || { NOTE[$name]="not built"; return 1; }
      PORT=$PORT ENGRAM_LOG_LEVEL=warn PING_INTERVAL=25000 PING_TIMEOUT=20000 \
        $NICE_CMD "$B/echo-server" >"$TMP/$name.log" 2>&1 & ;;
    node)
      [ -d "$ROOT/node_modules/socket.io" ] || { NOTE[$name]="node_modules/socket.io missing"; return 1; }
      $NICE_CMD node "$ROOT/bench/node-echo.mjs" "$PORT" >"$TMP/$name.log" 2>&1 & ;;
  esac
  SRV_PID=$!
  if ! wait_port "$PORT" 15; then
    NOTE[$name]="did not start: $(tail -3 "$TMP/$name.log" | tr '\n' ' ')"
    stop_server
    return 1
  fi
}

stop_server() {
  [ -n "$SRV_PID" ] || return 0
  kill "$SRV_PID" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SRV_PID" 2>/dev/null
  wait "$SRV_PID" 2>/dev/null
  SRV_PID=
}

# Waits (at most 10 s) until the server's RSS stops moving, so that the idle test's
# baseline is not blurred by start-up work (engram frees its password-hashing memory a
# moment after the first hash).
settle_rss() {
  local prev=-1 cur i
  for ((i = 0; i < 20; i++)); do
    cur=$(awk '/^VmRSS:/ {print $2}' "/proc/$SRV_PID/status" 2>/dev/null) || return 0
    [ -n "$cur" ] || return 0
    if [ "$prev" -ge 0 ] && [ $((cur - prev)) -le 64 ] && [ $((prev - cur)) -le 64 ]; then
      return 0
    fi
    prev=$cur
    sleep 0.5
  done
}

# Arguments the load generator needs for a server (protocol, event, auth).
lg_args() {
  case $1 in
    floor) echo "--proto tcp --size $FLOOR_SIZE" ;;
    echo-server) echo "--proto sio --size $SIZE --event message-with-ack" ;;
    *) echo "--proto sio --size $SIZE" ;;
  esac
}

ENGRAM_HDR=()
engram_auth() {
  ENGRAM_HDR=()
  local tok=${ENGRAM_TOKEN:-}
  if [ -z "$tok" ] && command -v curl >/dev/null; then
    local code
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -c "$TMP/cookies" \
      -H 'Content-Type: application/json' \
      -d '{"email":"bench@example.com","password":"bench-password-1","fullName":{"firstName":"Bench","lastName":"Mark"}}' \
      "http://127.0.0.1:$PORT/api/auth/register" 2>/dev/null) || code=000
    if [ "$code" = 201 ] || [ "$code" = 200 ]; then
      tok=$(awk '$6 == "token" {print $7}' "$TMP/cookies" | tail -1)
    fi
  fi
  [ -n "$tok" ] && ENGRAM_HDR=(--header "Cookie: token=$tok")
  return 0
}

# run NAME TEST loadgen-args...: runs the load generator, keeps its RESULT fields.
run() {
  local name=$1 test=$2
  shift 2
  local extra=()
  [ "$name" = engram ] && extra=("${ENGRAM_HDR[@]}")
  local budget=$(awk "BEGIN{print int($WARMUP + $DURATION + $HOLD + $SETTLE + 150)}")
  echo "== $name $test: loadgen $* $(lg_args "$name")" >&2
  # shellcheck disable=SC2046
  timeout -k 5 "$budget" $NICE_CMD "$LG" --port "$PORT" --server-pid "$SRV_PID" --label "$name-$test" \
    $(lg_args "$name") "${extra[@]}" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  cat "$TMP/err" "$TMP/out" | grep -v '^RESULT' | sed 's/^/   /' >&2
  local line
  line=$(grep '^RESULT' "$TMP/out" | tail -1)
  R[$name:$test:rc]=$rc
  for kv in $line; do
    [ "$kv" = RESULT ] && continue
    R[$name:$test:${kv%%=*}]=${kv#*=}
  done
  if ! kill -0 "$SRV_PID" 2>/dev/null; then
    NOTE[$name]="server died during $test: $(tail -3 "$TMP/$name.log" | tr '\n' ' ')"
    return 1
  fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for s in $SERVERS; do
  # Idle runs first, each on a fresh process: RSS per connection is not blurred by memory
  # that earlier connections left in the allocator.
  if start_server "$s"; then
    [ "$s" = engram ] && engram_auth
    settle_rss
    ok=1
    if [ "${SKIP_IDLE:-0}" != 1 ]; then
      ok=0
      if run "$s" idle --mode idle --conns "$IDLE_CONNS" --settle "$SETTLE" --hold 5 &&
        stop_server && start_server "$s"; then
        [ "$s" = engram ] && engram_auth
        settle_rss
        run "$s" held --mode idle --conns "$HELD_CONNS" --settle "$SETTLE" --hold "$HOLD" && ok=1
      fi
    fi
    if [ $ok = 1 ]; then
      for c in $CONNS; do
        run "$s" "echo$c" --mode echo --conns "$c" --inflight "$INFLIGHT" \
          --warmup "$WARMUP" --duration "$DURATION" || break
      done
    fi
    stop_server
  fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the table -------------------------------------------------------------------------
g() { echo "${R[$1]:-}"; }
num() { # value or n/a
  local v=${R[$1]:-}
  if [ -z "$v" ] || [ "$v" = "-1" ] || [ "$v" = "-1.000" ]; then echo "n/a"; else printf "$2" "$v"; fi
}
ratio() { # a / b
  local a=${R[$1]:-} b=${R[$2]:-}
  if [ -z "$a" ] || [ -z "$b" ] || [ "$a" = "-1.000" ] || [ "$b" = "-1.000" ]; then echo "n/a"; return; fi
  awk -v a="$a" -v b="$b" 'BEGIN{ if (b > 0 && a > 0) printf "%.2fx", a / b; else print "n/a" }'
}
held() {
  local s=$1
  [ -n "$(g "$s:held:ready")" ] || { echo n/a; return; }
  echo "$(g "$s:held:open")/$(g "$s:held:conns") ($(g "$s:held:failed") failed, $(g "$s:held:errors") lost)"
}

idle_cpu() { # server CPU during the hold, in % of one core
  local c=${R[$1:held:srv_cpu_us]:-} t=${R[$1:held:secs]:-}
  [ -n "$c" ] && [ -n "$t" ] || { echo n/a; return; }
  awk -v c="$c" -v t="$t" 'BEGIN{ if (c >= 0 && t > 0) printf "%.1f%%", c / t / 1e4; else print "n/a" }'
}

{
  echo
  echo "Transport benchmark, $START, $(nproc) cores, load average before $LOAD_BEFORE, after $LOAD_AFTER${NICE:+, nice $NICE}"
  echo "echo: K=$INFLIGHT in flight per connection, $SIZE B of data per message (floor: $FLOOR_SIZE raw bytes), ${WARMUP}s warm-up, ${DURATION}s window"
  printf "%-28s %14s %14s %14s %12s %12s\n" "" floor engram node engram/floor node/engram
  for c in $CONNS; do
    t=echo$c
    printf "%-28s %14s %14s %14s %12s %12s\n" "CPU us/round trip @$c" \
      "$(num floor:$t:srv_us_per_rt %.2f)" "$(num engram:$t:srv_us_per_rt %.2f)" \
      "$(num node:$t:srv_us_per_rt %.2f)" \
      "$(ratio engram:$t:srv_us_per_rt floor:$t:srv_us_per_rt)" \
      "$(ratio node:$t:srv_us_per_rt engram:$t:srv_us_per_rt)"
    printf "%-28s %14s %14s %14s %12s %12s\n" "round trips/s @$c" \
      "$(num floor:$t:rate %.0f)" "$(num engram:$t:rate %.0f)" "$(num node:$t:rate %.0f)" \
      "$(ratio engram:$t:rate floor:$t:rate)" "$(ratio node:$t:rate engram:$t:rate)"
    printf "%-28s %14s %14s %14s\n" "latency p50/p99 us @$c" \
      "$(num floor:$t:p50_us %.0f)/$(num floor:$t:p99_us %.0f)" \
      "$(num engram:$t:p50_us %.0f)/$(num engram:$t:p99_us %.0f)" \
      "$(num node:$t:p50_us %.0f)/$(num node:$t:p99_us %.0f)"
    printf "%-28s %14s %14s %14s\n" "loadgen CPU us/rt @$c" \
      "$(num floor:$t:lg_us_per_rt %.2f)" "$(num engram:$t:lg_us_per_rt %.2f)" \
      "$(num node:$t:lg_us_per_rt %.2f)"
  done
  printf "%-28s %14s %14s %14s %12s %12s\n" "RSS B/idle conn @$IDLE_CONNS" \
    "$(num floor:idle:rss_per_conn_b %.0f)" "$(num engram:idle:rss_per_conn_b %.0f)" \
    "$(num node:idle:rss_per_conn_b %.0f)" "" \
    "$(ratio node:idle:rss_per_conn_b engram:idle:rss_per_conn_b)"
  printf "%-28s %14s %14s %14s\n" "RSS B/idle conn @$HELD_CONNS" \
    "$(num floor:held:rss_per_conn_b %.0f)" "$(num engram:held:rss_per_conn_b %.0f)" \
    "$(num node:held:rss_per_conn_b %.0f)"
  printf "%-28s %14s %14s %14s\n" "held ${HOLD}s" "$(held floor)" "$(held engram)" "$(held node)"
  printf "%-28s %14s %14s %14s\n" "CPU % of a core while held" "$(idle_cpu floor)" \
    "$(idle_cpu engram)" "$(idle_cpu node)"
  for s in $SERVERS; do
    case $s in floor|engram|node) ;; *)
      echo "$s: CPU us/rt $(for c in $CONNS; do printf '@%s %s ' "$c" "$(num $s:echo$c:srv_us_per_rt %.2f)"; done)," \
        "RSS B/conn $(num $s:idle:rss_per_conn_b %.0f), held $(held $s)" ;;
    esac
    [ -n "${NOTE[$s]:-}" ] && echo "note: $s: ${NOTE[$s]}"
  done
  echo "targets: engram/floor <= 1.3x at 100 and 1000 conns; RSS <= 4096 B per idle conn; $HELD_CONNS held, 0 failed, 0 lost"
} | tee -a "${OUT:-/dev/null}"

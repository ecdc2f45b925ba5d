#!/usr/bin/env bash
# The transport load generator (bench/loadgen.c) against real servers, briefly:
# raw TCP echo against floor_server, Socket.IO echo (ack and no-ack) and idle hold against
# the Node reference (bench/node-echo.mjs) and, when built, echo-server and engram.
# Checks the RESULT line: every connection ready, round trips done, nothing lost.
# @serial (it generates load)
set -euo pipefail
B=${ENGRAM_BUILD:-build}
SRC=${ENGRAM_SRC:-.}
LG=$B/loadgen
PIDS=()
TMP=$(mktemp -d)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
pass=0

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
field() { # RESULT-line field
  sed -n 's/^RESULT .*\b'"$1"'=\([^ ]*\).*/\1/p' "$TMP/out"
}
# expect_run desc args...: runs loadgen, requires exit 0 and sane fields.
expect_run() {
  local desc=$1
  shift
  if ! timeout 60 "$LG" "$@" >"$TMP/out" 2>"$TMP/err"; then
    cat "$TMP/err" "$TMP/out"
    fail "$desc: loadgen failed"
  fi
  local conns ready failed
  conns=$(field conns); ready=$(field ready); failed=$(field failed)
  [ "$ready" = "$conns" ] || fail "$desc: $ready of $conns ready"
  [ "$failed" = 0 ] || fail "$desc: $failed failed"
  echo "ok: $desc: $(grep -v ^RESULT "$TMP/out" | head -1)"
  pass=$((pass + 1))
}

# Raw TCP against the floor server.
P=$(free_port)
"$B/floor_server" --port "$P" >/dev/null 2>&1 &
FPID=$!
PIDS+=($FPID)
wait_port "$P" || fail "floor_server did not start"
expect_run "floor tcp echo" --proto tcp --port "$P" --conns 20 --inflight 4 --size 100 \
  --warmup 0.2 --duration 1 --server-pid "$FPID" --procs 2
[ "$(field rt)" -gt 100 ] || fail "floor: too few round trips"
awk -v v="$(field srv_us_per_rt)" 'BEGIN{exit !(v > 0)}' || fail "floor: no server CPU measured"
expect_run "floor tcp idle" --proto tcp --mode idle --port "$P" --conns 300 --hold 0.5 \
  --settle 0.2 --server-pid "$FPID"
[ "$(field open)" = 300 ] || fail "floor idle: $(field open) open"

# Socket.IO against the Node reference.
if [ -d "$SRC/node_modules/socket.io" ]; then
  P=$(free_port)
  node "$SRC/bench/node-echo.mjs" "$P" >/dev/null 2>&1 &
  NPID=$!
  PIDS+=($NPID)
  wait_port "$P" || fail "node-echo did not start"
  expect_run "node sio echo (ack)" --port "$P" --conns 10 --inflight 2 --warmup 0.3 \
    --duration 1 --server-pid "$NPID"
  [ "$(field rt)" -gt 100 ] || fail "node: too few round trips"
  [ "$(field errors)" = 0 ] || fail "node: errors"
  expect_run "node sio echo (no ack, emit back)" --port "$P" --conns 10 --inflight 3 \
    --no-ack --warmup 0.3 --duration 1
  [ "$(field rt)" -gt 100 ] || fail "node no-ack: too few round trips"
  expect_run "node sio echo (message-with-ack, 2 procs)" --port "$P" --conns 6 --procs 2 \
    --event message-with-ack --warmup 0.2 --duration 0.5
  expect_run "node sio idle" --mode idle --port "$P" --conns 200 --hold 0.5 --settle 0.3 \
    --server-pid "$NPID"
  [ "$(field open)" = 200 ] || fail "node idle: $(field open) open"
  awk -v v="$(field rss_per_conn_b)" 'BEGIN{exit !(v > 0)}' || fail "node idle: no RSS growth"
  # A wrong path is refused at the upgrade: loadgen must fail, not hang.
  if timeout 30 "$LG" --port "$P" --conns 2 --path /nope/ --duration 0.2 --warmup 0 \
    --connect-timeout 5 >"$TMP/out" 2>&1; then
    fail "a refused upgrade was reported as success"
  fi
  [ "$(field ready)" = 0 ] || fail "refused upgrade: connections counted ready"
  echo "ok: refused upgrade reported"
  pass=$((pass + 1))
fi

# The C servers, when built: echo-server (event message-with-ack), engram (echo).
for srv in echo-server engram; do
  [ -x "$B/$srv" ] || continue
  P=$(free_port)
  D=$TMP/data-$srv
  mkdir -p "$D"
  PORT=$P ENGRAM_DATA_DIR=$D ENGRAM_LOG_LEVEL=warn "$B/$srv" >"$TMP/$srv.log" 2>&1 &
  SPID=$!
  PIDS+=($SPID)
  wait_port "$P" || fail "$srv did not start: $(cat "$TMP/$srv.log")"
  ev=echo
  [ "$srv" = echo-server ] && ev=message-with-ack
  # engram may require authentication: then the handshake is refused and the loadgen
  # reports a CONNECT_ERROR, which is a correct outcome for this test of the loadgen.
  if timeout 60 "$LG" --port "$P" --event "$ev" --conns 10 --inflight 2 --warmup 0.3 \
    --duration 1 --server-pid "$SPID" >"$TMP/out" 2>"$TMP/err"; then
    [ "$(field rt)" -gt 100 ] || fail "$srv: too few round trips"
    echo "ok: $srv sio echo: $(grep -v ^RESULT "$TMP/out" | head -1)"
  else
    grep -q "CONNECT_ERROR\|Authentication" "$TMP/out" "$TMP/err" ||
      { cat "$TMP/err" "$TMP/out"; fail "$srv: loadgen failed"; }
    echo "ok: $srv refuses unauthenticated sockets: $(grep 'first error' "$TMP/out")"
    # With a user registered through the REST API: the cookie, then the CONNECT auth.
    code=$(curl -s -m 20 -o /dev/null -w '%{http_code}' -c "$TMP/cookies" \
      -H 'Content-Type: application/json' \
      -d '{"email":"lg@example.com","password":"loadgen-password-1","fullName":{"firstName":"L","lastName":"G"}}' \
      "http://127.0.0.1:$P/api/auth/register") || code=000
    if [ "$code" = 201 ]; then
      tok=$(awk '$6 == "token" {print $7}' "$TMP/cookies" | tail -1)
      [ -n "$tok" ] || fail "$srv: no token cookie after registering"
      expect_run "$srv sio echo with the token cookie" --port "$P" --conns 10 --inflight 2 \
        --warmup 0.3 --duration 1 --header "Cookie: token=$tok" --server-pid "$SPID"
      [ "$(field rt)" -gt 100 ] || fail "$srv: too few round trips"
      expect_run "$srv sio echo with auth.token" --port "$P" --conns 4 --warmup 0.2 \
        --duration 0.5 --auth "{\"token\":\"$tok\"}"
      expect_run "$srv sio idle with the token cookie" --mode idle --port "$P" --conns 200 \
        --hold 0.5 --settle 0.3 --header "Cookie: token=$tok" --server-pid "$SPID"
      [ "$(field open)" = 200 ] || fail "$srv idle: $(field open) open"
    else
      echo "note: $srv: registering a user answered HTTP $code; authenticated runs skipped"
    fi
  fi
  pass=$((pass + 1))
done
echo "$pass passed, 0 failed"

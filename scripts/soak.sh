#!/usr/bin/env bash
# Soak test (issue: reliability and security): CONNS Socket.IO clients held on one engram
# for DURATION seconds while CHATTERS of them chat against an instant fake model, sampling
# the server's RSS every SAMPLE seconds. Reports errors, RSS growth after warm-up and the
# ai-message -> ai-response latency p50/p99. Exit status 0 only when there were zero
# errors, the server survived, and RSS grew by at most MAX_GROWTH_PCT after warm-up.
#
#   scripts/soak.sh            (make soak)   CONNS=10000 DURATION=600 CHATTERS=100
#   CONNS=1000 DURATION=60 scripts/soak.sh   a short form
#
# Pieces: build/fake_model (bench/fake_model.c, an instant OpenAI-compatible server),
# build/loadgen --mode idle (bench/loadgen.c: CONNS-CHATTERS connections over PROCS
# forked workers, answering pings, counting every lost connection as an error),
# bench/soak_chat.mjs (CHATTERS socket.io-client connections, one ai-message each every
# INTERVAL ms). The server's RSS: VmRSS of /proc/PID/status. Warm-up: WARMUP seconds after
# every connection is up; growth = (max RSS after warm-up - RSS at end of warm-up) / RSS at
# end of warm-up. Everything on 127.0.0.1; every process is stopped at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${ENGRAM_BUILD:-build}
CONNS=${CONNS:-10000}; DURATION=${DURATION:-600}; CHATTERS=${CHATTERS:-100}
USERS=${USERS:-20}; INTERVAL=${INTERVAL:-2000}; WARMUP=${WARMUP:-60}; SAMPLE=${SAMPLE:-5}
MAX_GROWTH_PCT=${MAX_GROWTH_PCT:-5}
IDLE=$(( CONNS - CHATTERS )); PROCS=$(( (IDLE + 4999) / 5000 ))
SECRET=soak-secret-0123456789abcdef0123456789
work=$(mktemp -d /tmp/engram-soak.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
for b in engram fake_model loadgen; do
  [ -x "$B/$b" ] || { echo "soak: $B/$b missing (make build)"; exit 2; }
done
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

"$B/fake_model" 0 >"$work/fake.out" & pids+=($!)
for _ in $(seq 50); do grep -q PORT= "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
fport=$(sed -n 's/^PORT=//p' "$work/fake.out")
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$port ENGRAM_DATA_DIR="$work" JWT_SECRET=$SECRET ENGRAM_HOST=127.0.0.1 \
  ENGRAM_LLM=openai OPENAI_BASE_URL="http://127.0.0.1:$fport/v1" ENGRAM_LLM_MODEL=fake \
  ENGRAM_RATE_MESSAGES=0 ENGRAM_LOG_LEVEL=warn "$B/engram" 2>"$work/engram.log" & epid=$!
pids+=($epid)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "soak: engram did not start"; cat "$work/engram.log"; exit 1; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$epid/status" 2>/dev/null || echo 0; }
echo "soak: engram pid $epid port $port; $CONNS clients ($IDLE idle over $PROCS workers, $CHATTERS chatting every ~$INTERVAL ms) for $DURATION s; RSS $(rss) KiB; load $(cut -d' ' -f1-3 /proc/loadavg)"

code=$(curl -s -o /dev/null -w '%{http_code}' -c "$work/cookies" -H 'Content-Type: application/json' \
  -d '{"email":"soak-idle@example.com","password":"soak-password-123","fullName":{"firstName":"Soak","lastName":"Idle"}}' \
  "http://127.0.0.1:$port/api/auth/register")
tok=$(awk '$6 == "token" {print $7}' "$work/cookies" | tail -1)
[ "$code" = 201 ] && [ -n "$tok" ] || { echo "soak: register failed ($code)"; exit 1; }

start=$(date +%s)
"$B/loadgen" --port "$port" --mode idle --conns "$IDLE" --procs "$PROCS" --hold "$DURATION" \
  --settle 1 --header "Cookie: token=$tok" --label soak-idle >"$work/idle.out" 2>"$work/idle.err" & lpid=$!
pids+=($lpid)
node bench/soak_chat.mjs --url "http://127.0.0.1:$port" --conns "$CHATTERS" --users "$USERS" \
  --interval "$INTERVAL" --duration "$DURATION" --warmup "$WARMUP" >"$work/chat.out" 2>"$work/chat.err" & cpid=$!
pids+=($cpid)

# RSS samples: "seconds_since_start KiB", until both clients are done.
: >"$work/rss"
while kill -0 "$lpid" 2>/dev/null || kill -0 "$cpid" 2>/dev/null; do
  kill -0 "$epid" 2>/dev/null || break
  echo "$(( $(date +%s) - start )) $(rss)" >>"$work/rss"
  sleep "$SAMPLE"
done
wait "$lpid"; lrc=$?
wait "$cpid"; crc=$?
alive=1; kill -0 "$epid" 2>/dev/null || alive=0
metrics_conns=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^engram_.*connections/ {print $1"="$2}' | tr '\n' ' ')

cat "$work/idle.err" "$work/idle.out" | grep -v '^RESULT' | sed 's/^/  /'
grep -v '^RESULT' "$work/chat.out" | sed 's/^/  /'; tail -5 "$work/chat.err" | sed 's/^/  chat stderr: /'
idle_line=$(grep '^RESULT' "$work/idle.out" | tail -1)
chat_line=$(grep '^RESULT' "$work/chat.out" | tail -1)
kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
idle_err=$(kv "$idle_line" errors); idle_ready=$(kv "$idle_line" ready)
chat_err=$(kv "$chat_line" errors); p99=$(kv "$chat_line" p99_ms); p50=$(kv "$chat_line" p50_ms)
sent=$(kv "$chat_line" sent); okn=$(kv "$chat_line" ok)
read -r base peak last <<<"$(awk -v w="$WARMUP" '$1 >= w && b == "" {b = $2} $1 >= w && $2 > p {p = $2} {l = $2} END {print b+0, p+0, l+0}' "$work/rss")"
growth=$(awk -v b="$base" -v p="$peak" 'BEGIN { if (b > 0) printf "%.2f", (p - b) * 100 / b; else print "nan" }')
engram_errs=$(grep -ciE 'error|sanitizer' "$work/engram.log")
echo "soak: RSS samples (s KiB): $(awk 'NR % 12 == 1' "$work/rss" | tr '\n' ',' )"
echo "soak: $CONNS connections for $DURATION s: idle held ${idle_ready:-?}/$IDLE with ${idle_err:-?} errors;" \
  "chat $okn/$sent answered with ${chat_err:-?} errors, p50 ${p50:-?} ms p99 ${p99:-?} ms;" \
  "RSS after warm-up $base KiB, peak $peak KiB, end $last KiB: growth ${growth}%;" \
  "server alive=$alive, error lines in its log: $engram_errs; $metrics_conns"
echo "soak: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "RESULT conns=$CONNS duration=$DURATION chatters=$CHATTERS idle_ready=${idle_ready:-0} idle_errors=${idle_err:-x}" \
  "chat_sent=${sent:-0} chat_ok=${okn:-0} chat_errors=${chat_err:-x} p50_ms=${p50:-x} p99_ms=${p99:-x}" \
  "rss_base_kib=$base rss_peak_kib=$peak rss_end_kib=$last rss_growth_pct=$growth alive=$alive"
[ "$engram_errs" -gt 0 ] && tail -20 "$work/engram.log" | sed 's/^/  engram: /'
fail=0
[ "$alive" = 1 ] || fail=1
[ "${idle_err:-x}" = 0 ] && [ "$lrc" = 0 ] || fail=1
[ "${chat_err:-x}" = 0 ] && [ "$crc" = 0 ] || fail=1
awk -v g="$growth" -v m="$MAX_GROWTH_PCT" 'BEGIN { exit !(g != "nan" && g <= m) }' || fail=1
[ "$fail" = 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit "$fail"

#!/usr/bin/env bash
# The ai-message pipeline benchmark (issue: language models and the pipeline).
# With the instant fake model (bench/fake_model.c: an OpenAI-compatible server answering
# at once), SQLite, the hash embedder and MEMORIES memories per user: ai-messages per
# second, client-observed latency p50/p99, the server's share of it (model time excluded:
# /metrics engram_answer_latency_seconds up to ai-response, _overhead_seconds up to the
# answer stored) and the server's CPU microseconds per ai-message, with CONNS connections
# (each its own chat).
#
#   bench/pipeline.sh [CONNS=100] [USERS=10] [MEMORIES=10000] [DURATION=15] [RATE=R] [PERF=out.data]
# WARMUP: seconds before the window (default 5; each user's memories load into RAM on the
# first message, so many users need longer). PREFILL_DIR: keep the prefilled store there
# and reuse it on the next run with the same folder.
# RATE: pace the load to RATE ai-messages/s in all (latency at that load; default: each
# connection sends its next message as soon as the answer is in, i.e. saturation).
# METRICS=file: keep the server's /metrics at the end (its latency histograms).
# PERF: also record a CPU profile of the server (perf, DWARF call graphs) during the window.
# SERVER=floor LEVEL=wire|store|embed: run bench/pipeline_floor instead of engram (the floor:
# only the wire part of an ai-message, plus the store / the embedder; see bench/README.md,
# "Floor"); FANOUT=0 adds --no-fanout. SYSCALLS=1: also count the server's system calls
# during the window (perf stat on syscalls:sys_enter_*) and print them per answer.
# Expects `make build`. Everything on 127.0.0.1; every process is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${ENGRAM_BUILD:-build}
E=${ENGRAM_BIN:-$B/engram} # the server under test (ENGRAM_BIN: compare two builds)
EARGS=()
if [ "${SERVER:-engram}" = floor ]; then
  E=${FLOOR_BIN:-$B/pipeline_floor}; EARGS=(--level "${LEVEL:-wire}")
  [ "${FANOUT:-1}" = 0 ] && EARGS+=(--no-fanout)
fi
CONNS=${CONNS:-100}; USERS=${USERS:-10}; MEMORIES=${MEMORIES:-10000}; DURATION=${DURATION:-15}
SECRET=bench-pipeline-secret-0123456789abcdef
work=$(mktemp -d /tmp/engram-pipeline.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

if [ -n "${PREFILL_DIR:-}" ] && [ -f "$PREFILL_DIR/engram.db" ] && [ -f "$PREFILL_DIR/pairs" ]; then
  echo "pipeline: reusing the prefilled store in $PREFILL_DIR"
  cp "$PREFILL_DIR/engram.db" "$PREFILL_DIR/pairs" "$work/"
else
  echo "pipeline: prefilling $USERS users x $MEMORIES memories ($(( CONNS / USERS )) chats each)"
  "$B/chat_prefill" --db "$work/engram.db" --users "$USERS" --chats $(( (CONNS + USERS - 1) / USERS )) \
    --memories "$MEMORIES" --out "$work/pairs" 2>&1 | tail -1
  if [ -n "${PREFILL_DIR:-}" ]; then mkdir -p "$PREFILL_DIR"; cp "$work/engram.db" "$work/pairs" "$PREFILL_DIR/"; fi
fi

"$B/fake_model" 0 >"$work/fake.out" & pids+=($!)
for _ in $(seq 50); do grep -q PORT= "$work/fake.out" 2>/dev/null && break; sleep 0.1; done
fport=$(sed -n 's/^PORT=//p' "$work/fake.out")
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$port ENGRAM_DB="$work/engram.db" ENGRAM_DATA_DIR="$work" JWT_SECRET=$SECRET \
  ENGRAM_LLM=openai OPENAI_BASE_URL="http://127.0.0.1:$fport/v1" ENGRAM_LLM_MODEL=fake \
  ENGRAM_RATE_MESSAGES=0 ENGRAM_LOG_LEVEL=warn "$E" "${EARGS[@]}" >/dev/null 2>"$work/engram.log" & epid=$!
pids+=($epid)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

echo "pipeline: load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${PERF:-}" ]; then
  (sleep 6; perf record -F 499 --call-graph dwarf,16384 -p "$epid" -o "$PERF" -- sleep 4 \
    >/dev/null 2>&1) &
fi
# CPU per answer by thread over the window, from /proc/PID/task/*/stat and /metrics: the
# event loop (the first task), the store writer and syncer (named threads) and the rest
# (the libuv pool: recall, window, embedding), which the total of chatload does not separate.
threadstat() {
  for t in /proc/$epid/task/*; do
    local n; n=$(cat "$t/comm" 2>/dev/null) || continue
    [ "${t##*/}" = "$epid" ] && n=loop
    case $n in loop | engram-writer | engram-syncer) ;; *) n=pool ;; esac
    echo "$n $(cut -d' ' -f14,15 "$t/stat" 2>/dev/null)"
  done | awk 'NF == 3 {u[$1] += $2; s[$1] += $3} END {for (k in u) print k, u[k] + s[k], u[k], s[k]}' | sort
}
# The system calls counted, one perf stat event each (SYSCALLS=1).
SCS="read write writev readv recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_ctl poll ppoll futex fdatasync fsync pwrite64 pread64 lseek fcntl openat close mmap munmap madvise brk getrandom clock_gettime"
answers() { curl -s "http://127.0.0.1:$port/metrics" | sed -n 's/^engram_answers_total //p'; }
(sleep "${WARMUP:-5}"; threadstat >"$work/t1"; curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics0"
 a1=$(answers)
 if [ -n "${SYSCALLS:-}" ]; then
   ev=$(for c in $SCS; do [ -d /sys/kernel/tracing/events/syscalls/sys_enter_$c ] && printf 'syscalls:sys_enter_%s,' "$c"; done)
   timeout -s INT "$DURATION" perf stat -x, -e "raw_syscalls:sys_enter,${ev%,}" -p "$epid" -o "$work/perfstat" >/dev/null 2>&1 &
 fi
 sleep "$DURATION"; threadstat >"$work/t2"; a2=$(answers)
 [ "$a2" -gt "$a1" ] && join "$work/t1" "$work/t2" | awk -v n=$(( a2 - a1 )) -v hz="$(getconf CLK_TCK)" \
   '{s = s sprintf(" %s %d", $1, ($5 - $2) * 1000000 / hz / n); us = us sprintf(" %s %d/%d", $1, ($6 - $3) * 1000000 / hz / n, ($7 - $4) * 1000000 / hz / n)}
    END {print "pipeline: us of CPU per answer by thread over " n " answers:" s; print "pipeline: us per answer by thread, user/system:" us}'
 if [ -n "${SYSCALLS:-}" ]; then
   wait
   [ "$a2" -gt "$a1" ] && awk -F, -v n=$(( a2 - a1 )) '$3 == "raw_syscalls:sys_enter" {all = $1}
     $3 ~ /^syscalls:sys_enter_/ && $1 + 0 > 0 {
       sub("syscalls:sys_enter_", "", $3); t += $1; s = s sprintf(" %s %.2f", $3, $1 / n)}
     END {printf "pipeline: system calls per answer: %.2f (others %.2f):%s\n", all / n, (all - t) / n, s}' "$work/perfstat"
 fi) & loopjob=$!
"$B/chatload" --port "$port" --pairs "$work/pairs" --secret "$SECRET" --conns "$CONNS" \
  --warmup "${WARMUP:-5}" --duration "$DURATION" --server-pid "$epid" ${RATE:+--rate "$RATE"} | tee "$work/result"
wait "$loopjob" || true
curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics"
[ -n "${METRICS:-}" ] && cp "$work/metrics" "$METRICS"
/usr/bin/python3 - "$work/metrics0" "$work/metrics" <<'PY'
import re, sys
# Quantiles of the answers since the window began (the warm-up's user loads left out), from
# the difference of the histograms at its start and at the end.
def buckets(path, name):
    try:
        text = open(path).read()
    except OSError:
        return []
    return [(float(m.group(1)) if m.group(1) != "+Inf" else float("inf"), int(m.group(2)))
            for m in re.finditer(r'^%s_bucket\{le="([^"]+)"\} (\d+)$' % name, text, re.M)]
for name, what in (("engram_answer_latency_seconds", "to ai-response"),
                   ("engram_answer_overhead_seconds", "to the answer stored")):
    end, start = buckets(sys.argv[2], name), dict(buckets(sys.argv[1], name))
    b = [(le, c - start.get(le, 0)) for le, c in end]
    total = b[-1][1] if b else 0
    def q(p):
        for le, c in b:
            if c >= p * total:
                return le
        return float("inf")
    if total:
        print("pipeline: server time %s, model excluded (bucket upper bounds): p50 <= %.2f ms, p99 <= %.2f ms over %d answers in the window"
              % (what, q(0.5) * 1000, q(0.99) * 1000, total))
PY
echo "pipeline: load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# Soak test (issue: reliability and security): CONNS Socket.IO clients held on one engram
# for DURATION seconds while CHATTERS of them chat against an instant fake model, sampling
# the server's RSS every SAMPLE seconds. Reports errors, RSS growth after warm-up, the
# achieved chat rate, the ai-message -> ai-response latency p50/p99 and the connect latency
# p50/p99. Exit status 0 only when there were zero errors (client side and error lines in
# the server's log), the server survived, and RSS grew by at most MAX_GROWTH_PCT after
# warm-up.
#
#   scripts/soak.sh            (make soak)   CONNS=10000 DURATION=600 CHATTERS=100
#   CONNS=1000 DURATION=240 WARMUP=60 PER_CHAT=5 INTERVAL=3000 scripts/soak.sh   a short form
#
# Pieces: build/fake_model (bench/fake_model.c, an instant OpenAI-compatible server),
# build/loadgen --mode idle (bench/loadgen.c: CONNS-CHATTERS connections over PROCS
# forked workers, each from its own loopback source address 127.0.0.x and with at most
# 5,000 connections (the open-file limit is 20,000 per process), answering pings, counting
# every lost connection as an error), bench/soak_chat.mjs (CHATTERS socket.io-client
# connections over USERS users, each sending one ai-message every ~INTERVAL ms, with a fixed
# working set: PER_CHAT messages per chat, at most CHATS chats each, the oldest checked
# against what was acked and then deleted through the REST API, so the stored data and the
# memory index stop growing). engram runs with no per-address connection cap (the default,
# ENGRAM_MAX_CONN_PER_IP=0) and no per-user message rate limit (ENGRAM_RATE_MESSAGES=0).
# The server's RSS: VmRSS of /proc/PID/status; its anonymous part RssAnon (the heap); and
# the pages of the database file that the SQLite readers have mapped (none since the readers
# stopped mapping it, 2026-11-26; kept to show it; mmap_size, from
# /proc/PID/smaps): those are the kernel's page cache of the file, counted in VmRSS only
# because the readers map it rather than pread() it, bounded by 4 readers x the file, and
# they come and go as the readers remap it, by 10-30 MB (SECURITY.md "Load and soak").
# Warm-up: WARMUP seconds from the start of the clients (the working set is full after
# CHATS * PER_CHAT * INTERVAL ms, 100 s by default). Growth = (mean over the last WINDOW s
# of the run - mean over the first WINDOW s after warm-up) / the latter. The criterion: the
# growth of VmRSS without the mapped database pages, and of RssAnon, each at most
# MAX_GROWTH_PCT. VmRSS itself (its growth, the RSS at the end of warm-up, at the end, the
# peak) and the mapped database pages are reported. Everything on 127.0.0.1; every process
# is stopped at the end; KEEP=1 keeps the work folder (database, logs, samples).
set -uo pipefail
cd "$(dirname "$0")/.."
B=${ENGRAM_BUILD:-build}
CONNS=${CONNS:-10000}; DURATION=${DURATION:-600}; CHATTERS=${CHATTERS:-100}
USERS=${USERS:-20}; INTERVAL=${INTERVAL:-5000}; WARMUP=${WARMUP:-180}; SAMPLE=${SAMPLE:-5}
PER_CHAT=${PER_CHAT:-10}; CHATS=${CHATS:-2}
MAX_GROWTH_PCT=${MAX_GROWTH_PCT:-5}; WINDOW=${WINDOW:-60}
IDLE=$(( CONNS - CHATTERS )); PROCS=$(( (IDLE + 4999) / 5000 ))
SECRET=soak-secret-0123456789abcdef0123456789
work=$(mktemp -d /tmp/engram-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [ "${KEEP:-0}" = 1 ]; then echo "soak: kept $work"; else rm -rf "$work"; fi
}
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
rss_parts() { awk '/^RssAnon/ {a = $2} /^RssFile/ {f = $2} END {print a + 0, f + 0}' "/proc/$epid/status" 2>/dev/null; }
dbmap() { # KiB of the database file's pages mapped in the server
  awk -v f="$work/engram.db" '/^[0-9a-f]+-[0-9a-f]+ / {n = $6} /^Rss:/ && index(n, f) == 1 {s += $2} END {print s + 0}' \
    "/proc/$epid/smaps" 2>/dev/null || echo 0
}
echo "soak: engram pid $epid port $port; $CONNS clients ($IDLE idle over $PROCS workers, $CHATTERS chatting every ~$INTERVAL ms) for $DURATION s; RSS $(rss) KiB; load $(cut -d' ' -f1-3 /proc/loadavg)"

code=$(curl -s -o /dev/null -w '%{http_code}' -c "$work/cookies" -H 'Content-Type: application/json' \
  -d '{"email":"soak-idle@example.com","password":"soak-password-123","fullName":{"firstName":"Soak","lastName":"Idle"}}' \
  "http://127.0.0.1:$port/api/auth/register")
tok=$(awk '$6 == "token" {print $7}' "$work/cookies" | tail -1)
[ "$code" = 201 ] && [ -n "$tok" ] || { echo "soak: register failed ($code)"; exit 1; }

start=$(date +%s)
cpu0=$(awk '{print $14 + $15}' "/proc/$epid/stat")
if [ "$IDLE" -gt 0 ]; then
  "$B/loadgen" --port "$port" --mode idle --conns "$IDLE" --procs "$PROCS" --hold "$DURATION" \
    --settle 1 --header "Cookie: token=$tok" --label soak-idle >"$work/idle.out" 2>"$work/idle.err" &
else
  echo "RESULT ready=0 errors=0" >"$work/idle.out"; : >"$work/idle.err"; true &
fi
lpid=$!
pids+=($lpid)
node bench/soak_chat.mjs --url "http://127.0.0.1:$port" --conns "$CHATTERS" --users "$USERS" \
  --interval "$INTERVAL" --duration "$DURATION" --warmup "$WARMUP" --per-chat "$PER_CHAT" \
  --chats "$CHATS" >"$work/chat.out" 2>"$work/chat.err" & cpid=$!
pids+=($cpid)

# Samples: "seconds_since_start RSS_KiB load1 database_KiB engineio_clients index_rows
# index_KiB RssAnon_KiB RssFile_KiB dbmap_KiB RSS-dbmap_KiB", until both clients are done
# (clients and index from /metrics; the database with its WAL).
dbkib() { du -sk "$work"/*.db* 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
metrics() {
  curl -s -m 5 "http://127.0.0.1:$port/metrics" | awk '$1 == "engram_engineio_clients" {c = $2}
    $1 == "engram_index_rows" {r = $2} $1 == "engram_index_bytes" {b = $2}
    END {printf "%d %d %d", c, r, b / 1024}'
}
: >"$work/rss"
while kill -0 "$lpid" 2>/dev/null || kill -0 "$cpid" 2>/dev/null; do
  kill -0 "$epid" 2>/dev/null || break
  r=$(rss); m=$(dbmap)
  echo "$(( $(date +%s) - start )) $r $(cut -d' ' -f1 /proc/loadavg) $(dbkib) $(metrics) $(rss_parts) $m $(( r - m ))" >>"$work/rss"
  sleep "$SAMPLE"
done
wait "$lpid"; lrc=$?
wait "$cpid"; crc=$?
alive=1; kill -0 "$epid" 2>/dev/null || alive=0
elapsed=$(( $(date +%s) - start ))
cpu1=$(awk '{print $14 + $15}' "/proc/$epid/stat" 2>/dev/null || echo "$cpu0")
cpu_pct=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$(getconf CLK_TCK)" -v s="$elapsed" \
  'BEGIN { printf "%.0f", (s > 0 ? (b - a) / t * 100 / s : 0) }')
curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics"
server_errs=$(awk '/^engram_errors_total/ {s += $2} END {print s + 0}' "$work/metrics")
# The server's own view: p50/p99 (bucket upper bounds) of its histograms over the whole run.
hq() {
  awk -v n="$1" 'index($1, n "_bucket{") == 1 { split($1, a, "\""); le[++k] = a[2]; c[k] = $2 }
    END { t = c[k]; if (!t) { print "-"; exit } for (i = 1; i <= k; i++) { if (!p50 && c[i] >= t * .5) p50 = le[i]; if (!p99 && c[i] >= t * .99) p99 = le[i] }
          printf "p50<=%ss p99<=%ss (%d)", p50, p99, t }' "$work/metrics"
}

cat "$work/idle.err" "$work/idle.out" | grep -v '^RESULT' | sed 's/^/  /'
grep -v '^RESULT' "$work/chat.out" | sed 's/^/  /'; tail -5 "$work/chat.err" | sed 's/^/  chat stderr: /'
idle_line=$(grep '^RESULT' "$work/idle.out" | tail -1)
chat_line=$(grep '^RESULT' "$work/chat.out" | tail -1)
kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
idle_err=$(kv "$idle_line" errors); idle_ready=$(kv "$idle_line" ready)
idle_c50=$(kv "$idle_line" connect_p50_ms); idle_c99=$(kv "$idle_line" connect_p99_ms)
chat_err=$(kv "$chat_line" errors); p99=$(kv "$chat_line" p99_ms); p50=$(kv "$chat_line" p50_ms)
sent=$(kv "$chat_line" sent); okn=$(kv "$chat_line" ok); rate=$(kv "$chat_line" rate)
rot=$(kv "$chat_line" rotations); checked=$(kv "$chat_line" checked)
chat_c50=$(kv "$chat_line" connect_p50_ms); chat_c99=$(kv "$chat_line" connect_p99_ms)
# RSS: point values (the first sample after warm-up, the peak after it, the last sample with
# the clients still connected) and the growth: mean over the first WINDOW s after warm-up vs
# mean over the last WINDOW s, for VmRSS, VmRSS without the mapped database pages and
# RssAnon (the heap: what a leak grows).
rss_stats() { # column -> "first peak last base_mean end_mean growth_pct"
  awk -v c="$1" -v w="$WARMUP" -v d="$DURATION" -v win="$WINDOW" '
    $1 < w || $1 > d { next }
    f == "" { f = $c } $c > p { p = $c } { l = $c }
    $1 < w + win { bs += $c; bn++ } $1 > d - win { es += $c; en++ }
    END { bm = bn ? bs / bn : 0; em = en ? es / en : 0
          printf "%d %d %d %.0f %.0f %s\n", f, p, l, bm, em, (bm > 0 ? sprintf("%.2f", (em - bm) * 100 / bm) : "nan") }' "$work/rss"
}
read -r base peak last base_mean end_mean growth <<<"$(rss_stats 2)"
read -r anon_base _ anon_last anon_base_mean anon_end_mean anon_growth <<<"$(rss_stats 8)"
read -r nodb_base _ nodb_last nodb_base_mean nodb_end_mean nodb_growth <<<"$(rss_stats 11)"
read -r _ dbmap_max _ dbmap_base_mean dbmap_end_mean _ <<<"$(rss_stats 10)"
dbfile_kib=$(( $(stat -c %s "$work/engram.db" 2>/dev/null || echo 0) / 1024 ))
peak_pct=$(awk -v b="$base_mean" -v p="$peak" 'BEGIN { printf "%.2f", (b > 0 ? (p - b) * 100 / b : 0) }')
read -r db_base db_last <<<"$(awk -v w="$WARMUP" '$1 >= w && b == "" {b = $4} {l = $4} END {print b+0, l+0}' "$work/rss")"
read -r load_min load_avg load_max <<<"$(awk 'NR == 1 || $3 < mn {mn = $3} $3 > mx {mx = $3} {s += $3} END {printf "%.1f %.1f %.1f", mn, s / NR, mx}' "$work/rss")"
engram_errs=$(awk '$2 == "error" || /Sanitizer|\"level\":\"error\"/' "$work/engram.log" | wc -l)
engram_warns=$(awk '$2 == "warn" || /\"level\":\"warn\"/' "$work/engram.log" | wc -l)
echo "soak: samples every ${SAMPLE}s (s RSS_KiB load1 db_KiB clients index_rows index_KiB anon_KiB file_KiB dbmap_KiB RSS-dbmap_KiB), one a minute:"
awk -v n=$(( 60 / SAMPLE )) 'NR % n == 1' "$work/rss" | sed 's/^/  /'
read -r rows_base rows_last clients_max <<<"$(awk -v w="$WARMUP" '$1 >= w && b == "" {b = $6} $5 > c {c = $5} {l = $6} END {print b+0, l+0, c+0}' "$work/rss")"
echo "soak: $CONNS connections for $DURATION s: idle held ${idle_ready:-?}/$IDLE with ${idle_err:-?} errors," \
  "connect p50 ${idle_c50:-?} ms p99 ${idle_c99:-?} ms; chat ${okn:-?}/${sent:-?} answered after warm-up" \
  "(${rate:-?}/s) with ${chat_err:-?} errors over the whole run, p50 ${p50:-?} ms p99 ${p99:-?} ms," \
  "$rot chats retired ($checked checked intact), chat connect p50 ${chat_c50:-?} ms p99 ${chat_c99:-?} ms"
echo "soak: RSS at the end of warm-up ($WARMUP s) $base KiB, at the end $last KiB, peak between $peak KiB;" \
  "mean of the first ${WINDOW} s after warm-up $base_mean KiB, of the last ${WINDOW} s $end_mean KiB:" \
  "growth ${growth}% (peak ${peak_pct}% over the first mean)"
echo "soak: the criterion: RSS without the mapped database pages $nodb_base -> $nodb_last KiB," \
  "means $nodb_base_mean -> $nodb_end_mean KiB: growth ${nodb_growth}%; anonymous (heap) $anon_base -> $anon_last KiB," \
  "means $anon_base_mean -> $anon_end_mean KiB: growth ${anon_growth}%; (mapped database pages: means" \
  "$dbmap_base_mean -> $dbmap_end_mean KiB, at most $dbmap_max KiB, the file $dbfile_kib KiB x 4 readers at most)"
echo "soak: working set: database with WAL $db_base KiB -> $db_last KiB; index rows $rows_base -> $rows_last;" \
  "Engine.IO clients at most $clients_max"
echo "soak: engram CPU ${cpu_pct}% of a core; server alive=$alive; its log: $engram_errs error lines," \
  "$engram_warns warn lines; engram_errors_total $server_errs"
echo "soak: server histograms: answer overhead (model excluded) $(hq engram_answer_overhead_seconds);" \
  "model $(hq engram_model_seconds); recall $(hq engram_recall_seconds)"
echo "soak: load average during the run: min $load_min mean $load_avg max $load_max ($(nproc) cores); after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "RESULT conns=$CONNS duration=$DURATION chatters=$CHATTERS idle_ready=${idle_ready:-0} idle_errors=${idle_err:-x}" \
  "idle_connect_p50_ms=${idle_c50:-x} idle_connect_p99_ms=${idle_c99:-x}" \
  "chat_sent=${sent:-0} chat_ok=${okn:-0} chat_rate=${rate:-x} chat_errors=${chat_err:-x} p50_ms=${p50:-x} p99_ms=${p99:-x}" \
  "chat_connect_p50_ms=${chat_c50:-x} chat_connect_p99_ms=${chat_c99:-x} rotations=${rot:-0} checked=${checked:-0}" \
  "rss_base_kib=$base rss_peak_kib=$peak rss_end_kib=$last rss_base_mean_kib=$base_mean rss_end_mean_kib=$end_mean" \
  "rss_growth_pct=$growth rss_peak_pct=$peak_pct anon_base_mean_kib=$anon_base_mean anon_end_mean_kib=$anon_end_mean" \
  "anon_growth_pct=$anon_growth nodb_base_mean_kib=$nodb_base_mean nodb_end_mean_kib=$nodb_end_mean" \
  "nodb_growth_pct=$nodb_growth dbmap_max_kib=$dbmap_max dbfile_kib=$dbfile_kib" \
  "db_base_kib=$db_base db_end_kib=$db_last index_rows_base=$rows_base index_rows_end=$rows_last" \
  "clients_max=$clients_max engram_cpu_pct=$cpu_pct log_errors=$engram_errs server_errors=$server_errs" \
  "load_mean=$load_avg alive=$alive"
[ "$engram_errs" -gt 0 ] || [ "$engram_warns" -gt 0 ] && grep -E ' (error|warn) |"level":"(error|warn)"|Sanitizer' "$work/engram.log" | sort -k3 | uniq -c -f2 | sort -rn | head -10 | sed 's/^/  engram: /'
fail=0
[ "$alive" = 1 ] || fail=1
[ "${idle_err:-x}" = 0 ] && [ "$lrc" = 0 ] || fail=1
[ "${chat_err:-x}" = 0 ] && [ "$crc" = 0 ] || fail=1
[ "$engram_errs" = 0 ] && [ "$server_errs" = 0 ] || fail=1
for g in "$nodb_growth" "$anon_growth"; do
  [[ $g =~ ^-?[0-9]+(\.[0-9]+)?$ ]] && awk -v g="$g" -v m="$MAX_GROWTH_PCT" 'BEGIN { exit !(g + 0 <= m + 0) }' || fail=1
done
[ "$fail" = 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit "$fail"

#!/usr/bin/env bash
# engram against its floor (bench/pipeline_floor.c), A/B in one invocation: ROUNDS rounds of
# bench/pipeline.sh, each round running every variant once in turn, every run under
# `flock /tmp/engram-bench.lock` (never two benchmarks at once). Then one more round with
# SYSCALLS=1 (perf stat on the system calls: its CPU figures are left out of the summary,
# the tracepoints cost a little). Prints one line per run and a summary: the median over the
# rounds of ai-messages/s and of the server's CPU per ai-message (total, and by thread
# user/system), and the system calls per ai-message.
#
#   bench/pipeline_floor_ab.sh [ROUNDS=3] [VARIANTS="engram wire store embed"]
#     [DURATION=10] [PRE=/tmp/pl/pre] [SYSCALLS=1]
# Variants: engram (build/engram), wire, store, embed (pipeline_floor --level ...),
# wire-nofanout (level wire without the chat-message fan-out); VARIANT@R paces chatload to R
# ai-messages/s in all (pipeline.sh RATE: the CPU per message at a given load, where the
# loop's writes coalesce less than at saturation). PRE: the prefilled store
# (pipeline.sh's PREFILL_DIR: copied for every run, never modified). Expects `make build`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
VARIANTS=${VARIANTS:-engram wire store embed}
out=$(mktemp /tmp/engram-floor-ab.XXXXXX)
trap 'rm -f "$out"' EXIT

run() { # variant syscalls
  local v=${1%@*} env=()
  [ "$1" != "$v" ] && env+=(RATE="${1#*@}")
  case $v in
  engram) env+=(SERVER=engram) ;;
  wire-nofanout) env+=(SERVER=floor LEVEL=wire FANOUT=0) ;;
  *) env+=(SERVER=floor LEVEL=$v) ;;
  esac
  [ "$2" = 1 ] && env+=(SYSCALLS=1)
  env "${env[@]}" CONNS=100 USERS=10 MEMORIES=10000 DURATION=${DURATION:-10} \
    PREFILL_DIR=${PRE:-/tmp/pl/pre} flock /tmp/engram-bench.lock bench/pipeline.sh 2>&1
}

for round in $(seq "$ROUNDS") sys; do
  [ "$round" = sys ] && [ "${SYSCALLS:-1}" != 1 ] && break
  for v in $VARIANTS; do
    r=$(run "$v" "$([ "$round" = sys ] && echo 1 || echo 0)")
    load=$(echo "$r" | sed -n 's/.*load average before: \([0-9.]*\).*/\1/p')
    res=$(echo "$r" | grep -o 'RESULT.*' || echo "RESULT failed")
    us=$(echo "$r" | sed -n 's/.*by thread, user\/system: *//p')
    sc=$(echo "$r" | sed -n 's/.*system calls per answer: *//p')
    echo "round=$round variant=$v load=$load $res | $us${sc:+ | syscalls $sc}" | tee -a "$out"
    if ! echo "$r" | grep -q RESULT; then echo "$r" | tail -20 >&2; fi
  done
done

/usr/bin/python3 - "$out" "$VARIANTS" <<'PY'
import re, statistics, sys
lines = open(sys.argv[1]).read().splitlines()
variants = sys.argv[2].split()
def med(v):
    return statistics.median(v) if v else float("nan")
print("\nsummary (median of the timing rounds; per ai-message):")
print("%-14s %8s %8s  %s" % ("variant", "msgs/s", "cpu us", "by thread user/system us"))
for var in variants:
    rows = [l for l in lines if (" variant=%s " % var) in l and not l.startswith("round=sys")]
    rate = [float(m.group(1)) for l in rows for m in [re.search(r" rate=([\d.]+)", l)] if m]
    cpu = [float(m.group(1)) for l in rows for m in [re.search(r"cpu_us_per_msg=([\d.]+)", l)] if m]
    threads = {}
    for l in rows:
        part = l.split(" | ")[1] if " | " in l else ""
        for name, u, s in re.findall(r"(\S+) (\d+)/(\d+)", part):
            threads.setdefault(name, ([], []))
            threads[name][0].append(int(u))
            threads[name][1].append(int(s))
    th = " ".join("%s %d/%d" % (n, med(u), med(s)) for n, (u, s) in sorted(threads.items()))
    print("%-14s %8.0f %8.1f  %s" % (var, med(rate), med(cpu), th))
sys_rows = [l for l in lines if l.startswith("round=sys")]
if sys_rows:
    print("\nsystem calls per ai-message (the SYSCALLS=1 round):")
    for l in sys_rows:
        var = re.search(r"variant=(\S+)", l).group(1)
        sc = l.split("syscalls ", 1)[1] if "syscalls " in l else "-"
        print("%-14s %s" % (var, sc))
PY

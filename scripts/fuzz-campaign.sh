#!/usr/bin/env bash
# A fuzzing campaign: every libFuzzer target of FUZZ_BUILD (default build-fuzz, from
# `make build-fuzz`: clang, libFuzzer + ASan + UBSan) in turn, each until RUNS executions
# or MINUTES minutes, whichever comes first, on a scratch copy of its committed corpus
# (new inputs kept in $FUZZ_BUILD/campaign/<target>; merge useful ones into
# fuzz/<target>/corpus with `-merge=1`). Prints the executions, speed and coverage per
# target and fails on any finding (the crashing input is left in $FUZZ_BUILD/campaign/).
#
#   scripts/fuzz-campaign.sh [TARGET...]     (make fuzz-campaign)
#   RUNS=10000000 MINUTES=30 JOBS=1 scripts/fuzz-campaign.sh http ws
# JOBS>1 runs that many targets at once (the machine has 2 cores shared by everyone).
set -uo pipefail
cd "$(dirname "$0")/.."
FB=${FUZZ_BUILD:-build-fuzz}
RUNS=${RUNS:-10000000}; MINUTES=${MINUTES:-30}; JOBS=${JOBS:-1}
shopt -s nullglob
if [ $# -gt 0 ]; then targets=("$@"); else
  targets=(); for b in "$FB"/fuzz/fuzz_*; do targets+=("${b##*/fuzz_}"); done
fi
[ ${#targets[@]} -gt 0 ] || { echo "fuzz-campaign: no targets in $FB/fuzz (make build-fuzz)"; exit 2; }
mkdir -p "$FB/campaign"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

one() {
  local t=$1 bin=$FB/fuzz/fuzz_$1 work=$FB/campaign/$1 log=$FB/campaign/$1.log
  [ -x "$bin" ] || { echo "$t missing"; return 1; }
  mkdir -p "$work"
  local dict=(); [ -f "fuzz/$t/dict" ] && dict=(-dict="fuzz/$t/dict")
  local start=$(date +%s)
  "$bin" "${dict[@]}" -runs="$RUNS" -max_total_time=$((MINUTES * 60)) -print_final_stats=1 \
    -artifact_prefix="$FB/campaign/$t-" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    "$work" "fuzz/$t/corpus" >"$log" 2>&1
  local rc=$? secs=$(( $(date +%s) - start ))
  local execs speed cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  local verdict=clean; [ "$rc" = 0 ] || verdict="FINDING (exit $rc, see $log)"
  printf '%-14s %12s execs %8s s %8s exec/s  cov %6s  %s\n' "$t" "${execs:-?}" "$secs" "${speed:-?}" "${cov:-?}" "$verdict"
  [ "$rc" = 0 ]
}

echo "fuzz-campaign: ${#targets[@]} targets, each up to $RUNS executions or $MINUTES min, $JOBS at a time ($(date -u +%H:%MZ))"
fail=0; running=0
for t in "${targets[@]}"; do
  if [ "$JOBS" -gt 1 ]; then
    one "$t" & running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n || fail=1; running=$((running - 1)); fi
  else
    one "$t" || fail=1
  fi
done
while [ "$running" -gt 0 ]; do wait -n || fail=1; running=$((running - 1)); done
[ "$fail" = 0 ] && echo "fuzz-campaign: no findings" || echo "fuzz-campaign: FINDINGS (logs in $FB/campaign/)"
exit "$fail"

#!/usr/bin/env bash
# Every C unit test (tests/unit/*/test_*.c, built as $B/tests/unit_<module>_test_<name>)
# under valgrind memcheck: --leak-check=full, definite, indirect and possible leaks and
# every memory error fail the run (--error-exitcode), as does a failing test. Needs a build
# without sanitizers (`make build`; ENGRAM_BUILD picks another folder). Tests marked
# @needs-services get PostgreSQL and Redis from scripts/services.sh when SERVICES=1
# (default: skipped, said so). Suppressions: tests/valgrind.supp (each entry says why it is
# not a leak). Memcheck runs code 10-50 times slower: the tests' deadlines
# (waits and "not hung" upper bounds, tests/unit/test_time.h) are multiplied by
# ENGRAM_TEST_TIME_SCALE, 10 here unless set; what the tests assert is unchanged.
#
#   scripts/valgrind.sh [REGEX]       (make valgrind)   only tests whose name matches REGEX
# Prints one line per test (ok / FAIL with the valgrind summary) and a total; each log is
# kept in $B/valgrind/<test>.log. Exit status 0 only when every test passed clean.
set -uo pipefail
cd "$(dirname "$0")/.."
B=${ENGRAM_BUILD:-build}
B=$(cd "$B" && pwd)
filter=${1:-.}
command -v valgrind >/dev/null || { echo "valgrind: not installed (scripts/deps.sh)"; exit 2; }
mkdir -p "$B/valgrind"
export ENGRAM_BUILD=$B ENGRAM_SRC=$PWD ENGRAM_SERVICES_ENV=$B/services.env
export ENGRAM_TEST_TIME_SCALE=${ENGRAM_TEST_TIME_SCALE:-10}
services=0
if [ "${SERVICES:-0}" = 1 ]; then
  scripts/services.sh start "$B/services" >/dev/null && services=1
  trap 'scripts/services.sh stop "$B/services" >/dev/null 2>&1' EXIT
fi
pass=0; fail=0; skip=0; failed=()
for src in tests/unit/*/test_*.c; do
  module=$(basename "$(dirname "$src")"); name=$(basename "$src" .c)
  t=unit/$module/$name; exe=$B/tests/unit_${module}_${name}
  [[ $t =~ $filter ]] || continue
  if [ ! -x "$exe" ]; then echo "valgrind: $t not built ($exe)"; fail=$((fail + 1)); failed+=("$t"); continue; fi
  if grep -q '@needs-services' "$src" && [ "$services" = 0 ]; then
    echo "valgrind: $t skipped (@needs-services; SERVICES=1 runs it)"; skip=$((skip + 1)); continue
  fi
  log=$B/valgrind/unit_${module}_${name}.log
  start=$(date +%s)
  timeout -k 10 "${VG_TIMEOUT:-900}" valgrind --tool=memcheck --leak-check=full \
    --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
    --error-exitcode=99 --track-fds=no --num-callers=30 \
    --suppressions="$PWD/tests/valgrind.supp" ${VG_EXTRA:-} "$exe" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  summary=$(grep -E 'ERROR SUMMARY|definitely lost:|indirectly lost:|possibly lost:|All heap blocks were freed' "$log" |
    sed -e 's/==[0-9]*== *//' -e 's/ *(suppressed: 0 from 0)//' | tr '\n' ' ')
  if [ "$rc" = 0 ]; then
    pass=$((pass + 1)); echo "valgrind: ok   $t (${secs}s) $summary"
  else
    fail=$((fail + 1)); failed+=("$t")
    echo "valgrind: FAIL $t (exit $rc, ${secs}s) $summary -- $log"
    grep -E '^==[0-9]+== (Invalid|Conditional|Use of|Syscall param|Mismatched|[0-9,]+ bytes in)|^==[0-9]+==    (at|by) ' "$log" | head -12 | sed 's/^/    /'
  fi
done
echo "valgrind: $pass clean, $fail failed, $skip skipped${failed:+ (failed: ${failed[*]})} (ENGRAM_TEST_TIME_SCALE=$ENGRAM_TEST_TIME_SCALE)"
[ "$fail" = 0 ]

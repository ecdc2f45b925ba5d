#!/usr/bin/env bash
# Runs every libFuzzer target in build-fuzz/fuzz for SECS seconds each, on a scratch copy of
# its committed corpus (new inputs are kept in build-fuzz/corpus/<target>; merge the
# interesting ones into fuzz/<target>/corpus by hand). Fails on the first finding.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shopt -s nullglob
targets=(build-fuzz/fuzz/fuzz_*)
[ ${#targets[@]} -gt 0 ] || { echo "fuzz: no targets built"; exit 0; }
for bin in "${targets[@]}"; do
  t=${bin##*/fuzz_}
  work=build-fuzz/corpus/$t; mkdir -p "$work"
  dict=(); [ -f "fuzz/$t/dict" ] && dict=(-dict="fuzz/$t/dict")
  echo "fuzz: $t for ${secs}s"
  "$bin" "${dict[@]}" -max_total_time="$secs" -print_final_stats=1 -artifact_prefix="build-fuzz/" \
    -max_len=65536 "$work" "fuzz/$t/corpus" 2>"build-fuzz/$t.log" || {
    tail -50 "build-fuzz/$t.log"; echo "fuzz: $t FAILED"; exit 1; }
  grep -E 'stat::number_of_executed_units' "build-fuzz/$t.log" | sed "s/^/fuzz: $t /"
done

#!/usr/bin/env bash
# bench/run.sh: `make bench`. Runs every benchmark in bench/ against the binaries of
# `make build` (build/, or ENGRAM_BUILD): the transport benchmark, then the memory, store
# and pipeline benchmarks when present. Each prints its own table; see bench/README.md.
# A failing benchmark is reported and the others still run; the exit code is non-zero if
# any failed.
set -uo pipefail
cd "$(dirname "$0")"
status=0
for b in transport memory store pipeline; do
  script=./$b.sh
  [ -f "$script" ] || continue
  echo "=== bench: $b ($(date -u +%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg))"
  if ! bash "$script"; then
    echo "=== bench: $b FAILED"
    status=1
  fi
done
exit $status

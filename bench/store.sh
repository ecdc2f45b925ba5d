#!/usr/bin/env bash
# bench/store.sh: durable message inserts per second through the store interface, SQLite
# and PostgreSQL in one table (see bench/README.md "Store"). Starts a private PostgreSQL
# (scripts/services.sh) unless ENGRAM_TEST_PG is already set, and stops it afterwards.
# Knobs: SECONDS_PER_MODE (3), INFLIGHT (256), THREADS (8), BENCH_DIR (SQLite folder).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${ENGRAM_BUILD:-$root/build}
bin=$build/bench_store
[ -x "$bin" ] || { echo "missing $bin (make build)"; exit 1; }
tmp=$(mktemp -d /tmp/engram-bench-store-XXXXXX)
chmod 755 "$tmp" # the postgres user must reach its data folder inside
started=
cleanup() {
  if [ -n "$started" ]; then
    ENGRAM_SERVICES_ENV=$tmp/services.env "$root/scripts/services.sh" stop "$tmp/services" || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ -z "${ENGRAM_TEST_PG:-}" ]; then
  ENGRAM_SERVICES_ENV=$tmp/services.env "$root/scripts/services.sh" start "$tmp/services" >/dev/null
  started=1
  ENGRAM_TEST_PG=$(sed -n 's/^ENGRAM_TEST_PG=//p' "$tmp/services.env")
  export ENGRAM_TEST_PG
fi
mkdir -p "${BENCH_DIR:-$tmp/sqlite}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
ENGRAM_LOG_LEVEL=warn "$bin" --seconds "${SECONDS_PER_MODE:-3}" --inflight "${INFLIGHT:-256}" \
  --threads "${THREADS:-8}" --dir "${BENCH_DIR:-$tmp/sqlite}"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

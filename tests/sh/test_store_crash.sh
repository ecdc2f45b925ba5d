#!/usr/bin/env bash
# Crash test of the store: a writer inserts messages through the group-commit writer and
# prints each id once its completion said "durable"; we kill -9 it mid-burst, reopen the
# store and check that every printed id is there (and, for SQLite, that PRAGMA
# integrity_check and the FTS5 integrity-check say ok). Runs on SQLite, then PostgreSQL.
# @needs-services
set -euo pipefail
build=${ENGRAM_BUILD:?ENGRAM_BUILD is not set}
bin=$build/store_crashwriter
[ -x "$bin" ] || { echo "missing $bin"; exit 1; }
tmp=$(mktemp -d /tmp/engram-crash-XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# crash URL NAME: one write, kill, check round.
crash() {
  local url=$1 name=$2 out=$tmp/$2.out
  "$bin" write "$url" 64 >"$out" 2>"$tmp/$name.err" &
  pid=$!
  # Let it commit for a while (at least 300 acked ids or 3 s), then kill it mid-burst.
  for _ in $(seq 60); do
    [ "$(wc -l <"$out")" -ge 300 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  sleep 0.2
  kill -9 "$pid" 2>/dev/null || { echo "$name: writer died early"; cat "$tmp/$name.err"; exit 1; }
  wait "$pid" 2>/dev/null || true
  pid=
  local user
  user=$(awk '$1 == "chat" {print $2; exit}' "$out")
  [ -n "$user" ] || { echo "$name: no chat line"; cat "$tmp/$name.err"; exit 1; }
  local acked
  acked=$(grep -c -E '^[0-9a-f]{24}$' "$out" || true)
  echo "$name: $acked messages acked before kill -9"
  [ "$acked" -gt 0 ] || { echo "$name: nothing acked"; exit 1; }
  "$bin" check "$url" "$user" <"$out"
}

crash "$tmp/engram.db" sqlite
# A second round on the same file after the crash: recovery leaves a usable database.
crash "$tmp/engram.db" sqlite-again

pg=
if [ -n "${ENGRAM_SERVICES_ENV:-}" ] && [ -f "$ENGRAM_SERVICES_ENV" ]; then
  pg=$(sed -n 's/^ENGRAM_TEST_PG=//p' "$ENGRAM_SERVICES_ENV")
fi
if [ -n "$pg" ]; then
  crash "$pg" postgres
else
  echo "postgres: ENGRAM_TEST_PG not set, skipped"
fi
echo "store crash test: ok"

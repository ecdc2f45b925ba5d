#!/usr/bin/env bash
# Operator CLI: engram user add/list/delete, engram migrate, engram export --user, on a
# temporary data folder (SQLite). Runs the real $ENGRAM_BUILD/engram.
set -euo pipefail
BIN=${ENGRAM_BUILD:-build}/engram
DIR=$(mktemp -d /tmp/engram-cli-XXXXXX)
cleanup() {
  if [ -n "${SRV_PID:-}" ]; then kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
export ENGRAM_DATA_DIR=$DIR JWT_SECRET=cli-test-secret-0123456789abcdef ENGRAM_LOG_LEVEL=warn
unset ENGRAM_DB
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }

# The binary must know the subcommands; say so plainly if main does not dispatch them yet.
if ! "$BIN" user list >/dev/null 2>"$DIR/probe.err"; then
  cat "$DIR/probe.err" >&2
  fail "engram user list failed: main.c must dispatch user/migrate/export to cli_user/cli_migrate/cli_export"
fi

out=$("$BIN" migrate) || fail "migrate"
echo "$out" | grep -Eq "schema version [0-9]+" || fail "migrate output: $out"
"$BIN" migrate >/dev/null || fail "migrate is idempotent"
ok "migrate"

printf 'file-password-1\n' >"$DIR/pw"
out=$("$BIN" user add Ops@Example.com --password-file "$DIR/pw" --first Olga --last Ops) || fail "user add (file)"
echo "$out" | grep -Eq '^[0-9a-f]{24} ops@example.com$' || fail "user add output: $out"
echo 'stdin-password-2' | "$BIN" user add second@example.com --password-stdin >/dev/null || fail "user add (stdin)"
ok "user add"

# Errors: duplicate, short password, bad email, both/neither password sources, unknown.
if "$BIN" user add ops@example.com --password-file "$DIR/pw" 2>"$DIR/err"; then fail "duplicate accepted"; fi
grep -q "already exists" "$DIR/err" || fail "duplicate message: $(cat "$DIR/err")"
if echo short | "$BIN" user add third@example.com --password-stdin 2>"$DIR/err"; then fail "short password"; fi
grep -q "at least 8" "$DIR/err" || fail "short password message"
if echo 'long enough pw' | "$BIN" user add not-an-email --password-stdin 2>/dev/null; then fail "bad email"; fi
if echo 'long enough pw' | "$BIN" user add bad-name@example.com --password-stdin --first $'\xff' 2>/dev/null; then
  fail "a name that is not UTF-8 was accepted"
fi
set +e
"$BIN" user add x@example.com >/dev/null 2>&1; [ $? -eq 2 ] || fail "no password source is a usage error"
"$BIN" user frobnicate >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown subcommand is a usage error"
set -e
ok "user add errors"

list=$("$BIN" user list 2>/dev/null)
[ "$(echo "$list" | wc -l)" -eq 2 ] || fail "user list: $list"
# (ids sort by creation second only, so two users made in one second come in any order)
echo "$list" | grep -Eq $'^[0-9a-f]{24}\tops@example.com\tOlga\tOps\t[0-9]{4}-' || fail "user list line: $list"
echo "$list" | grep -q $'\tsecond@example.com\t\t\t' || fail "user list: $list"
ok "user list"

# The CLI-made user signs in over REST, makes a chat; export shows it.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$PORT "$BIN" >"$DIR/server.log" 2>&1 &
SRV_PID=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
code=$(curl -s -o "$DIR/login.json" -w '%{http_code}' -c "$DIR/jar" -H 'content-type: application/json' \
  -d '{"email":"ops@example.com","password":"file-password-1"}' "http://127.0.0.1:$PORT/api/auth/login")
[ "$code" = 200 ] || fail "login of a CLI user: $code $(cat "$DIR/login.json")"
code=$(curl -s -o /dev/null -w '%{http_code}' -b "$DIR/jar" -H 'content-type: application/json' \
  -d '{"title":"Exported chat"}' "http://127.0.0.1:$PORT/api/chat")
[ "$code" = 201 ] || fail "chat create: $code"
kill "$SRV_PID"; status=0; wait "$SRV_PID" || status=$?; SRV_PID=
[ "$status" -eq 0 ] || fail "server exit status $status: $(tail -20 "$DIR/server.log")"
if grep -Eq "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:" "$DIR/server.log"; then
  fail "sanitizer report: $(tail -40 "$DIR/server.log")"
fi
ok "CLI user signs in over REST"

"$BIN" export --user OPS@example.com >"$DIR/export.json" || fail "export"
python3 - "$DIR/export.json" <<'PY' || fail "export content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["user"]["email"] == "ops@example.com", d
assert d["user"]["fullName"] == {"firstName": "Olga", "lastName": "Ops"}, d
assert "password" not in json.dumps(d).lower() or "password_hash" not in json.dumps(d)
assert [c["title"] for c in d["chats"]] == ["Exported chat"], d
assert d["chats"][0]["messages"] == [], d
PY
if "$BIN" export --user nobody@example.com >/dev/null 2>&1; then fail "export of an unknown user"; fi
ok "export"

out=$("$BIN" user delete Ops@Example.com) || fail "user delete"
echo "$out" | grep -q "deleted" || fail "delete output"
if "$BIN" user delete ops@example.com 2>/dev/null; then fail "second delete succeeded"; fi
[ "$("$BIN" user list 2>/dev/null | wc -l)" -eq 1 ] || fail "list after delete"
ok "user delete"
echo "all CLI tests passed"

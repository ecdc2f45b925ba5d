#!/usr/bin/env bash
# Operator CLI for memories and the migration path from the Node design:
# `engram import --user EMAIL FILE...` (mongoexport JSON lines and --jsonArray, Extended
# JSON ids and dates, bad lines reported with their numbers and skipped, re-import
# idempotent, foreign chats refused) and `engram memory search|list|forget`.
set -euo pipefail
BIN=${ENGRAM_BUILD:-build}/engram
DIR=$(mktemp -d /tmp/engram-climem-XXXXXX)
trap 'rm -rf "$DIR"' EXIT
export ENGRAM_DATA_DIR=$DIR JWT_SECRET=cli-memory-secret-0123456789abcdef ENGRAM_LOG_LEVEL=warn
unset ENGRAM_DB
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok - $*"; }
py() { /usr/bin/python3 -c "$@"; }

printf 'password-one-1\n' >"$DIR/pw"
"$BIN" user add ana@example.com --password-file "$DIR/pw" >/dev/null || fail "user add"
"$BIN" user add bob@example.com --password-file "$DIR/pw" >/dev/null || fail "user add"

# What mongoexport writes for the Node design's collections (canonical and relaxed dates).
cat >"$DIR/chats.json" <<'J'
{"_id":{"$oid":"65a000000000000000000001"},"user":{"$oid":"64ffffffffffffffffffffff"},"title":"Garden","lastActivity":{"$date":"2024-01-12T10:00:00.000Z"},"__v":0}
{"_id":{"$oid":"65a000000000000000000002"},"user":{"$oid":"64ffffffffffffffffffffff"},"title":"Travel","lastActivity":{"$date":{"$numberLong":"1705312800000"}}}
J
cat >"$DIR/messages.json" <<'J'
{"_id":{"$oid":"65a000000000000000000101"},"user":{"$oid":"64ffffffffffffffffffffff"},"chat":{"$oid":"65a000000000000000000001"},"content":"I planted three apricot trees along the south wall.","role":"user","createdAt":{"$date":"2024-01-12T09:58:00.000Z"}}
{"_id":{"$oid":"65a000000000000000000102"},"user":{"$oid":"64ffffffffffffffffffffff"},"chat":{"$oid":"65a000000000000000000001"},"content":"Apricots like a warm sheltered wall.","role":"model","createdAt":{"$date":"2024-01-12T09:58:05.000Z"}}
this is not json
{"_id":{"$oid":"65a000000000000000000103"},"chat":{"$oid":"65a000000000000000000002"},"content":"","role":"user"}
{"_id":{"$oid":"65a000000000000000000104"},"chat":{"$oid":"65a000000000000000000002"},"content":"My flight to Reykjavik leaves on March 3rd.","role":"user","createdAt":{"$date":1705312700000}}
{"_id":{"$oid":"65a000000000000000000105"},"chat":{"$oid":"65a0000000000000000000ff"},"content":"orphan","role":"user"}
J
"$BIN" import --user ana@example.com "$DIR/chats.json" "$DIR/messages.json" >"$DIR/out" 2>"$DIR/err" || { cat "$DIR/err"; fail "import"; }
grep -q "imported 2 chats and 3 messages for ana@example.com (0 already there, 3 bad records skipped)" "$DIR/out" || { cat "$DIR/out" "$DIR/err"; fail "import summary"; }
grep -q "messages.json:3: skipped" "$DIR/err" || fail "bad JSON line not reported with its number"
grep -q "messages.json:4: skipped: message content is not a non-empty string" "$DIR/err" || fail "empty content not reported"
grep -q "chat 65a0000000000000000000ff is not in the import" "$DIR/err" || fail "orphan message not reported"
grep -q "3/3 messages (3 embedded)" "$DIR/err" || fail "progress line"
ok "import (JSON lines, Extended JSON, bad lines skipped)"

"$BIN" export --user ana@example.com >"$DIR/export.json" || fail "export"
py '
import json, sys
d = json.load(open(sys.argv[1]))
chats = {c["_id"]: c for c in d["chats"]}
g = chats["65a000000000000000000001"]
assert g["title"] == "Garden", g
assert [m["_id"] for m in g["messages"]] == ["65a000000000000000000101", "65a000000000000000000102"], g
assert g["messages"][0]["createdAt"] == "2024-01-12T09:58:00.000Z", g["messages"][0]
assert g["messages"][1]["role"] == "model"
t = chats["65a000000000000000000002"]["messages"]
assert t[0]["createdAt"] == "2024-01-15T09:58:20.000Z", t
' "$DIR/export.json" || fail "ids and dates kept"
ok "ids, roles and dates kept"

out=$("$BIN" import --user ana@example.com "$DIR/chats.json" "$DIR/messages.json" 2>/dev/null) || fail "re-import"
echo "$out" | grep -q "imported 0 chats and 0 messages for ana@example.com (3 already there" || fail "re-import not idempotent: $out"
ok "re-import is idempotent"

if "$BIN" import --user bob@example.com "$DIR/chats.json" >"$DIR/out" 2>"$DIR/err"; then fail "importing another user's chat ids must fail"; fi
grep -q "belongs to another user" "$DIR/err" || fail "foreign chat message"
out=$("$BIN" memory list --user bob@example.com) || fail "memory list bob"
py 'import json,sys; assert json.loads(sys.argv[1])["memories"] == []' "$out" || fail "bob got memories"
ok "another user's chats are refused and nothing is left half-imported"

cat >"$DIR/array.json" <<'J'
[{"_id":{"$oid":"65b000000000000000000001"},"title":"Array chat","lastActivity":{"$date":"2024-02-01T00:00:00Z"}},
 {"_id":{"$oid":"65b000000000000000000101"},"chat":{"$oid":"65b000000000000000000001"},"content":"The boat is moored at pier seven.","role":"user","createdAt":{"$date":"2024-02-01T00:00:00Z"}}]
J
out=$("$BIN" import --user ana@example.com "$DIR/array.json" 2>/dev/null) || fail "import --jsonArray file"
echo "$out" | grep -q "imported 1 chats and 1 messages" || fail "array import: $out"
ok "mongoexport --jsonArray files"

out=$("$BIN" memory search --user ana@example.com --k 2 where are the apricot trees planted) || fail "memory search"
py '
import json, sys
m = json.loads(sys.argv[1])["memories"]
assert len(m) >= 1 and m[0]["id"] == "65a000000000000000000101", m
assert m[0]["chatId"] == "65a000000000000000000001" and m[0]["score"] > 0
' "$out" || fail "search result: $out"
ok "memory search"

out=$("$BIN" memory list --user ana@example.com --limit 10) || fail "memory list"
py 'import json,sys; m=json.loads(sys.argv[1])["memories"]; assert len(m)==4, m; assert m[0]["id"]=="65b000000000000000000101", m' "$out" || fail "list: $out"
"$BIN" memory forget --user ana@example.com 65a000000000000000000101 | grep -q "forgot 65a000000000000000000101" || fail "forget one"
out=$("$BIN" memory search --user ana@example.com apricot trees) || fail "search after forget"
py 'import json,sys; assert all(x["id"]!="65a000000000000000000101" for x in json.loads(sys.argv[1])["memories"])' "$out" || fail "forgotten memory came back"
"$BIN" memory forget --user ana@example.com --all | grep -q "forgot 3 memories" || fail "forget all"
out=$("$BIN" memory list --user ana@example.com)
py 'import json,sys; assert json.loads(sys.argv[1])["memories"]==[]' "$out" || fail "memories left after forget --all"
"$BIN" export --user ana@example.com | grep -q "apricot trees" || fail "forgetting memories must keep the messages"
ok "memory list and forget (messages stay)"

if "$BIN" memory search --user nobody@example.com x 2>/dev/null; then fail "unknown user"; fi
if "$BIN" memory frobnicate --user ana@example.com 2>/dev/null; then fail "unknown subcommand"; fi
ok "errors"
echo "1..9 passed"

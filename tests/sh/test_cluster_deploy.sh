#!/usr/bin/env bash
# deploy/ is complete and valid: the nginx config passes `nginx -t` (certificates
# swapped for a plain listener), proxies WebSocket upgrades with ip_hash stickiness and
# long enough timeouts; the systemd unit passes `systemd-analyze verify` (when present)
# and reads both environment files; the environment files set what every node must
# share (database, Redis, JWT secret) and each node its own data folder; the engram
# binary accepts the environment (`engram --help` lists every variable used).
set -euo pipefail
src=${ENGRAM_SRC:-$(pwd)}
build=${ENGRAM_BUILD:-$src/build}
d=$src/deploy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for f in README.md nginx/engram.conf systemd/engram@.service env/common.env env/node-1.env \
  env/node-2.env env/node-3.env; do
  [ -s "$d/$f" ] || fail "deploy/$f missing"
done

# nginx: syntax and the settings that matter.
conf=$d/nginx/engram.conf
grep -q '^ *ip_hash;' "$conf" || fail "no ip_hash stickiness"
grep -q 'proxy_set_header Upgrade \$http_upgrade' "$conf" || fail "no Upgrade header"
grep -q 'proxy_set_header Connection \$connection_upgrade' "$conf" || fail "no Connection upgrade"
grep -q 'proxy_http_version 1.1' "$conf" || fail "upstream not HTTP/1.1"
t=$(sed -n 's/^ *proxy_read_timeout \([0-9]*\)s;.*/\1/p' "$conf" | head -1)
[ "${t:-0}" -gt 45 ] || fail "proxy_read_timeout ${t}s <= pingInterval + pingTimeout (45 s)"
[ "$(grep -c '^ *server 10\.0\.0\.1[1-3]:3000' "$conf")" = 3 ] || fail "three upstream nodes expected"
if command -v nginx >/dev/null; then
  sed -e 's/listen 443 ssl http2;/listen 127.0.0.1:1;/' -e '/ssl_certificate/d' "$conf" >"$tmp/engram.conf"
  printf 'pid %s/nginx.pid;\nerror_log %s/error.log;\nevents {}\nhttp { include %s/engram.conf; }\n' \
    "$tmp" "$tmp" "$tmp" >"$tmp/nginx.conf"
  nginx -t -q -p "$tmp" -c "$tmp/nginx.conf" || fail "nginx -t"
fi

# systemd unit.
unit=$d/systemd/engram@.service
grep -q '^EnvironmentFile=/etc/engram/common.env$' "$unit" || fail "unit: common.env"
grep -q '^EnvironmentFile=/etc/engram/node-%i.env$' "$unit" || fail "unit: node-%i.env"
grep -q '^ExecStart=/usr/local/bin/engram serve$' "$unit" || fail "unit: ExecStart"
grep -q '^KillSignal=SIGTERM$' "$unit" || fail "unit: SIGTERM"
if command -v systemd-analyze >/dev/null; then
  sed 's#/usr/local/bin/engram#/bin/true#' "$unit" >"$tmp/engram@.service"
  out=$(systemd-analyze verify "$tmp/engram@.service" 2>&1 || true)
  if echo "$out" | grep -v -e 'EnvironmentFile' -e 'not executable' -e '^$' -e 'Failed to prepare' | grep -qi 'error\|unknown'; then
    fail "systemd-analyze: $out"
  fi
fi

# Environment: shared settings in common.env, per-node ones in node-N.env.
for k in ENGRAM_DB ENGRAM_REDIS_URL JWT_SECRET ENGRAM_LOG_FORMAT; do
  grep -q "^$k=" "$d/env/common.env" || fail "common.env: $k"
done
grep -q '^ENGRAM_DB=postgres://' "$d/env/common.env" || fail "common.env: PostgreSQL"
grep -q '^ENGRAM_REDIS_URL=redis://' "$d/env/common.env" || fail "common.env: Redis"
for i in 1 2 3; do
  for k in PORT ENGRAM_HOST ENGRAM_DATA_DIR; do
    grep -q "^$k=" "$d/env/node-$i.env" || fail "node-$i.env: $k"
  done
done
dirs=$(cat "$d"/env/node-*.env | sed -n 's/^ENGRAM_DATA_DIR=//p' | sort -u | wc -l)
[ "$dirs" = 3 ] || fail "each node needs its own ENGRAM_DATA_DIR"

# Every variable the files set is one engram knows.
if [ -x "$build/engram" ]; then
  help=$("$build/engram" --help)
  for k in $(cat "$d"/env/*.env | sed -n 's/^\([A-Z_0-9]*\)=.*/\1/p' | sort -u); do
    case $k in ENGRAM_LOG_FORMAT | ENGRAM_LOG_LEVEL) continue ;; esac # read by the logger
    grep -q -- "$k" <<<"$help" || fail "engram does not know $k" # (a pipe into grep -q can SIGPIPE echo: pipefail)
  done
fi
echo "deploy: ok"

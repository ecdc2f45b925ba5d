#!/usr/bin/env bash
# Starts (or stops) the servers the tests need, on free loopback ports, in DIR:
#   PostgreSQL (initdb in DIR/pg as the unprivileged user "postgres", trust auth on loopback)
#   Redis (no persistence)
# and writes their addresses to DIR/../services.env (or $ENGRAM_SERVICES_ENV):
#   ENGRAM_TEST_PG=postgres://engram@127.0.0.1:PORT/engram
#   ENGRAM_TEST_REDIS=redis://127.0.0.1:PORT
#   ENGRAM_TEST_PG_CTL="..."   the command that restarts PostgreSQL (reconnect tests)
# Usage: scripts/services.sh start|stop DIR
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?dir}
envfile=${ENGRAM_SERVICES_ENV:-$(dirname "$dir")/services.env}
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

stop() {
  if [ -f "$dir/pg/postmaster.pid" ]; then
    as_pg "$pgbin/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -f "$dir/redis.pid" ]; then
    kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
    rm -f "$dir/redis.pid"
  fi
}

case $cmd in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac

stop
rm -rf "$dir"; mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  chown postgres "$dir"
fi
chmod 755 "$dir"

pgport=$(free_port)
as_pg "$pgbin/initdb" -D "$dir/pg" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1
cat >>"$dir/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$dir'
max_connections = 200
fsync = on
shared_buffers = 64MB
CONF
as_pg "$pgbin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 start >/dev/null
as_pg "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -q \
  -c "CREATE ROLE engram LOGIN SUPERUSER" -c "CREATE DATABASE engram OWNER engram" >/dev/null

redisport=$(free_port)
redis-server --bind 127.0.0.1 --port "$redisport" --save '' --appendonly no \
  --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir"
for _ in $(seq 50); do redis-cli -p "$redisport" ping >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$envfile" <<ENV
ENGRAM_TEST_PG=postgres://engram@127.0.0.1:$pgport/engram
ENGRAM_TEST_REDIS=redis://127.0.0.1:$redisport
ENGRAM_TEST_PG_CTL="runuser -u postgres -- $pgbin/pg_ctl -D $dir/pg -l $dir/pg.log -w"
ENV
echo "services: PostgreSQL on 127.0.0.1:$pgport, Redis on 127.0.0.1:$redisport ($envfile)"

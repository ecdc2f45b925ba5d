#!/usr/bin/env bash
# Installs every Debian and npm package that building, running and testing engram needs.
# Idempotent: only what is missing is installed. Usage: scripts/deps.sh [build|test|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}

build_pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev clang-format
  libuv1-dev libjansson-dev libjwt-dev libsodium-dev libsqlite3-dev libpq-dev
  libcurl4-openssl-dev libssl-dev libhiredis-dev libmsgpack-dev libutf8proc-dev libstemmer-dev
  libcmocka-dev zlib1g-dev)
test_pkgs=(postgresql redis-server python3-socketio python3-websocket python3-requests python3-aiohttp
  chromium nginx valgrind sqlite3 libfaiss-dev libopenblas-dev procps)

pkgs=("${build_pkgs[@]}")
[ "$what" = build ] || pkgs+=("${test_pkgs[@]}")

# Node.js: the machine's own (it may come from another repository than Debian's, whose
# npm package would conflict with it); Debian's when there is none.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm packages (socket.io-client for tests and the web UI bundle, socket.io for the
# reference benchmark, playwright-core for browser tests), pinned by package-lock.json.
if [ -f package.json ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi

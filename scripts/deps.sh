#!/usr/bin/env bash
# Installs what regiondb's stack needs on a Debian machine, idempotently:
# Debian packages (MariaDB, memcached, Node.js) only when missing, dynalite
# into the project-local .tools folder, and the stack command. It touches
# nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${REGIONDB_TOOLS:-$PWD/.tools}"

need=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || need+=(memcached)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "deps: need root (or sudo) to install Debian packages: ${need[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "deps: installing Debian packages: ${need[*]}" >&2
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null \
    || { echo "deps: apt-get install ${need[*]} failed" >&2; exit 1; }
fi

if [ ! -f "$tools/node_modules/dynalite/cli.js" ]; then
  echo "deps: installing dynalite 4.0.0 (npm) into $tools" >&2
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --loglevel=error dynalite@4.0.0 >/dev/null \
    || { echo "deps: npm install dynalite@4.0.0 failed" >&2; exit 1; }
fi

mkdir -p "$tools/bin"
go build -o "$tools/bin/stack" ./internal/cmd/stack

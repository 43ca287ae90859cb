#!/usr/bin/env bash
# Makes sure the services the test suite talks to answer on loopback: PostgreSQL on 5432 and
# Redis on 6379 — and that the tools the tests start themselves are there (redis-server and
# redis-cli for private and cluster Redis instances, openssl for the TLS test's throw-away CA,
# luac5.1 for the test that parses the queue's Lua scripts, and Chromium with its WebDriver for
# the console's browser tests).
# Installs what is missing from Debian's packages (apt-get), then starts each service that is not
# running, with the same commands this kind of machine uses at boot.
set -euo pipefail

# ensure <command> <debian package>: installs the package when the command is missing.
ensure() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1; then
    echo "services: installing $2"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$2" >/dev/null
  fi
  command -v "$1" >/dev/null 2>&1 || { echo "services: $1 is missing; install $2" >&2; exit 1; }
}

ensure redis-server redis-server
ensure redis-cli redis-tools
ensure openssl openssl
ensure luac5.1 lua5.1
ensure chromium chromium
ensure chromedriver chromium-driver
if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! (exec 3<>"/dev/tcp/127.0.0.1/5432") 2>/dev/null; then
  ensure pg_ctlcluster postgresql
fi

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do
    answers "$port" && return 0
    sleep 0.5
  done
  echo "services: $name did not start answering on 127.0.0.1:$port within 30 s" >&2
  return 1
}

if ! answers 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    wait_for PostgreSQL 5432
  else
    echo "services: PostgreSQL is not running and not installed (apt-get install postgresql)" >&2
    exit 1
  fi
fi

if ! answers 6379; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "services: starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis 6379
  else
    echo "services: Redis is not running and not installed (apt-get install redis-server)" >&2
    exit 1
  fi
fi

# The 3-primary Redis Cluster (127.0.0.1:7101-7103) is started by the test kit itself on first use
# (crates/testkit/src/cluster.rs), with the redis-server and redis-cli ensured above.

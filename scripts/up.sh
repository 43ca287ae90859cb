#!/usr/bin/env bash
# Runs the producer (API on 127.0.0.1:8080), two workers and queue-events on embedded defaults
# until ctrl-c. Storage: $DATABASE_URL or ./longhaul.db (SQLite). Redis: $REDIS_URL or the local one.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bins --quiet
export DATABASE_URL=${DATABASE_URL:-sqlite://longhaul.db}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export LONGHAUL_LOG_FORMAT=${LONGHAUL_LOG_FORMAT:-text}
bin=target/debug
target/debug/producer migrate
pids=()
LONGHAUL_LISTEN=127.0.0.1:8080 $bin/producer serve --skip-migrations & pids+=($!)
LONGHAUL_CONSUMER_NAME=worker-1 LONGHAUL_ADMIN_ADDR=127.0.0.1:9091 $bin/worker --skip-migrations & pids+=($!)
LONGHAUL_CONSUMER_NAME=worker-2 LONGHAUL_ADMIN_ADDR=127.0.0.1:9093 $bin/worker --skip-migrations & pids+=($!)
LONGHAUL_ADMIN_ADDR=127.0.0.1:9092 $bin/queue-events & pids+=($!)
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait; }
trap stop INT TERM
echo "up: API on http://127.0.0.1:8080 — create a tenant with: $bin/producer tenant create acme; ctrl-c stops everything"
wait

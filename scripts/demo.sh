#!/usr/bin/env bash
# The one-command demo: builds the binaries, then runs the whole system on embedded defaults
# (SQLite; Redis at $REDIS_URL or a private redis-server) and shows it working.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --bins --quiet
exec target/debug/longhaul-demo "$@"

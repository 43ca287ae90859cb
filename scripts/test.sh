#!/usr/bin/env bash
# The full test suite, as the README gives it: starts PostgreSQL and Redis if needed, then runs the
# lint gates and every test of the workspace against the real services.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/services.sh

bash scripts/check.sh
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast

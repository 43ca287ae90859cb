# longhaul — everyday commands. `just` lists them.

default:
    @just --list

# The full test suite: starts PostgreSQL and Redis if needed, lints, then runs every test.
test:
    bash scripts/test.sh

# Formatting, clippy with -D warnings, and docs with -D warnings.
check:
    bash scripts/check.sh

# Format the code.
fmt:
    cargo fmt --all

# Install what the tests need if missing, and start PostgreSQL and Redis if they are not running.
services:
    bash scripts/services.sh

# The full fault suite (release binaries): worker churn over 5 000 jobs, Redis losing its data,
# a 10 s PostgreSQL outage, poison entries, 50 000 jobs on 4 workers. One JSON line per scenario.
# CI runs the same tests at a short size as part of `just test`. Figures: RELIABILITY.md.
chaos:
    cargo build --release --bins
    LONGHAUL_CHAOS=full cargo test --release -p longhaul-e2e --test chaos -- --nocapture --test-threads=1

# Queue-only micro-benchmark against local Redis (prints one JSON line).
bench-queue:
    cargo bench -p longhaul-queue --bench queue

# Throughput versus partition count on the 3-primary test Redis Cluster (started if needed).
bench-partitions:
    BENCH_N=60000 cargo bench -p longhaul-queue --bench partitions

# The one-command demo: the whole system on embedded defaults (SQLite; Redis or a private redis-server).
demo:
    bash scripts/demo.sh

# Producer, two workers and queue-events on embedded defaults, until ctrl-c.
up:
    bash scripts/up.sh

# End-to-end benchmarks against local Redis and PostgreSQL (one JSON line per scenario), then the
# queue-only one. BENCH_N, CALLERS, PACED_RATE, PACED_SECONDS, SUMMARIZE_N, SUMMARIZE_CHUNKS,
# FAIR_A_N, FAIR_B_N, BENCH_WORKERS, WORKER_CONCURRENCY, BENCH_PARTITIONS, BENCH_LOGS and SCENARIOS
# (default: product paced summarize fairness unfair pruning)
# adjust them.
bench:
    cargo build --release --bins
    target/release/longhaul-bench
    cargo bench -p longhaul-queue --bench queue

# The console's browser tests (headless Chromium), saving the main pages as PNGs into
# docs/screenshots for the README.
screenshots:
    cargo build --bins
    LONGHAUL_SCREENSHOTS=docs/screenshots cargo test -p longhaul-e2e --test console

# The query plans of the operator's views on a million jobs (docs/QUERY_PLANS.md): a throw-away
# PostgreSQL database, seeded, EXPLAIN ANALYZE before and after migration 0007, then dropped.
# PLANS_ROWS sets the size; the full plans go to target/query-plans.
plans:
    bash scripts/query-plans.sh

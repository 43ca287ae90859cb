#!/usr/bin/env bash
# The query plans the operator's views rely on, measured on a million jobs (docs/QUERY_PLANS.md).
#
# Creates a throw-away PostgreSQL database (longhaul_plans_<pid>), applies every migration of
# migrations/postgres in order with psql (each file in one transaction, as the store's migrator
# does), seeds PLANS_ROWS jobs (1 000 000 by default: 50 tenants with a skew, three kinds, ~96 %
# completed, ~3 % failed with error classes, some cancelled, a live tail of queued, running and
# scheduled jobs, created over 30 days), the audit trail of every third job and the operation log
# of every fifth, and VACUUM ANALYZEs them. Then it runs EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) for
# every statement the admin API and the console run against these tables: first without the
# indexes the console's migrations (0007, 0008) create, in the form the later migrations left them
# ("before"), then after building them again ("after"), and prints a summary table. The statements
# are the .sql files the store includes (PREPARE ... AS <the file>, then EXECUTE), so a plan cannot
# drift from the code; each is planned as the store has it planned (see plans_sql). The database is
# dropped at the end, also on failure.
#
# Needs psql, createdb and dropdb, and a PostgreSQL where PGUSER may create databases: PGHOST
# (127.0.0.1), PGPORT (5432), PGUSER (postgres) as for psql. Output: PLANS_OUT (target/query-plans)
# gets before.txt and after.txt (every plan in full) and summary.md. PLANS_KEEP=1 keeps the
# database for a closer look.
set -euo pipefail
cd "$(dirname "$0")/.."

export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
ROWS=${PLANS_ROWS:-1000000}
RUNS=5 # measured runs of each case; the summary gives the fastest and the median
OUT=${PLANS_OUT:-target/query-plans}
DB=longhaul_plans_$$
SQL=crates/store/sql/common
# The migrations whose indexes are measured: the "before" run has every index but theirs.
MEASURED="0007 0008"

case $ROWS in '' | *[!0-9]*) echo "query-plans: PLANS_ROWS must be a whole number, got '$ROWS'" >&2; exit 2 ;; esac
[ "$ROWS" -ge 10000 ] || { echo "query-plans: PLANS_ROWS must be at least 10000" >&2; exit 2; }
for tool in psql createdb dropdb; do
  command -v "$tool" >/dev/null 2>&1 || { echo "query-plans: $tool is missing (Debian: postgresql-client)" >&2; exit 1; }
done

q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
seconds() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.1f", b - a }'; }

mkdir -p "$OUT"
createdb "$DB"
if [ "${PLANS_KEEP:-}" = 1 ]; then
  trap 'echo "query-plans: kept database $DB (PLANS_KEEP=1): dropdb $DB when done"' EXIT
else
  trap 'dropdb --if-exists "$DB" >/dev/null 2>&1 || echo "query-plans: could not drop $DB" >&2' EXIT
fi
echo "query-plans: database $DB on $PGHOST:$PGPORT ($(psql -X -tA -d "$DB" -c 'SHOW server_version'))"

# every migration, in order, each in one transaction
for f in migrations/postgres/*.sql; do q -1 -f "$f"; done
# the indexes of jobs and operations that the MEASURED migrations create, by name (a later
# migration may have created one again in another form: it is measured in that form)
measured=$(for m in $MEASURED; do cat migrations/postgres/"$m"_*.sql; done |
  sed -n 's/^CREATE INDEX \(IF NOT EXISTS \)\{0,1\}\([a-z_0-9]*\) ON \(jobs\|operations\) .*/\2/p' | sort -u)
[ -n "$measured" ] || { echo "query-plans: no index found in migrations $MEASURED" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# The seed: one statement per table, generate_series and a fixed random seed (the same data on
# every run). Job g is created at 30 days ago + g/ROWS of 30 days, so seq and created_at rise
# together, as they do when one clock stamps them.
# Secondary indexes are dropped for the seed and built again after it from their definitions as the
# migrations made them (pg_indexes): one build is much quicker than a million inserts into each.
# Constraint indexes (primary keys, job_id's UNIQUE) stay.
start=$(seconds)
secondary="FROM pg_indexes i WHERE schemaname = 'public' AND tablename IN ('jobs', 'audit_log', 'operations')
    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = format('%I', i.indexname)::regclass)"
{
  echo "SET maintenance_work_mem = '256MB';"
  q -tA -c "SELECT indexdef || ';' $secondary ORDER BY indexname"
} >"$OUT/indexes.sql"
q -tA -c "SELECT format('DROP INDEX %I;', indexname) $secondary" | q
q -v rows="$ROWS" <<'SQL'
SET synchronous_commit = off;
SET work_mem = '512MB';
SELECT setseed(0.18) \g /dev/null

-- 50 tenants; tenant-00 gets ~21 % of the jobs, tenant-49 ~0.1 % (floor(50 * r^2.5)).
INSERT INTO tenants (tenant_id, name, api_key_hash, webhook_url, created_at)
SELECT 'tenant-' || lpad(i::text, 2, '0'), 'Tenant ' || i, decode(md5('plans/key/' || i), 'hex'), NULL,
       now() - interval '90 days'
FROM generate_series(0, 49) i;

INSERT INTO jobs (job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
                  next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at,
                  finished_at, lease_entry, lease_delivery, run_at, priority)
WITH base AS (
    SELECT g,
           now() - interval '30 days' + interval '30 days' * (g::float8 / :rows) AS created,
           'tenant-' || lpad(floor(50 * power(random(), 2.5))::int::text, 2, '0') AS tenant,
           random() AS rk, random() AS rs, random() AS rc, random() AS rp
    FROM generate_series(1, :rows) g
), shaped AS (
    SELECT g, created, tenant, rc, rp,
           -- three kinds: a busy one, a second, and a quiet one (1 %)
           CASE WHEN rk < 0.6 THEN 'triage' WHEN rk < 0.99 THEN 'summarize' ELSE 'export' END AS kind,
           CASE
               -- the newest 0.5 %: a backlog (40 % queued) and some running
               WHEN g > :rows - :rows / 200 AND rs < 0.40 THEN 'queued'
               WHEN g > :rows - :rows / 200 AND rs < 0.44 THEN 'running'
               -- of the newest 10 %, 0.3 % wait for a time to run at
               WHEN g > :rows - :rows / 10 AND rs > 0.997 THEN 'scheduled'
               WHEN rs < 0.03 THEN 'failed'
               WHEN rs < 0.035 THEN 'cancelled'
               ELSE 'completed'
           END AS status
    FROM base
), classed AS (
    SELECT *,
           CASE
               WHEN status = 'failed' THEN
                   CASE WHEN rc < 0.6 THEN 'invalid' WHEN rc < 0.9 THEN 'retryable' ELSE 'alert' END
               -- a fifth of the queued ones wait for their retry
               WHEN status = 'queued' AND rc < 0.2 THEN 'retryable'
           END AS error_class,
           CASE WHEN rp < 0.9 THEN 'normal' WHEN rp < 0.97 THEN 'low' ELSE 'high' END AS priority,
           CASE WHEN status IN ('running', 'completed', 'failed') THEN created + interval '1 second' END AS started,
           CASE
               WHEN status IN ('completed', 'failed') THEN created + interval '1 second' * (2 + g % 20)
               WHEN status = 'cancelled' THEN created + interval '1 minute'
           END AS finished
    FROM shaped
)
SELECT 'job_' || md5('plans/job/' || g), tenant, kind,
       CASE kind
           WHEN 'triage' THEN 'T-' || g || '@1'
           WHEN 'summarize' THEN 'doc-' || g || ':' || md5('plans/text/' || g) || md5('plans/text/' || g)
           ELSE 'export-' || g
       END,
       CASE kind
           WHEN 'triage' THEN jsonb_build_object('ticket_id', 'T-' || g, 'revision', 1)
           WHEN 'summarize' THEN
               jsonb_build_object('document_id', 'doc-' || g, 'text', 'The text of document ' || g || '.')
           ELSE jsonb_build_object('account', tenant, 'months', 3)
       END,
       status,
       CASE status WHEN 'completed' THEN 'apply' WHEN 'running' THEN 'classify' END,
       CASE status WHEN 'completed' THEN 100 WHEN 'running' THEN 40 ELSE 0 END,
       CASE
           WHEN status = 'failed' AND error_class = 'retryable' THEN 3
           WHEN status IN ('running', 'completed', 'failed') OR error_class IS NOT NULL THEN 1
           ELSE 0
       END,
       3,
       CASE WHEN error_class IS NOT NULL AND status = 'queued' THEN created + interval '30 seconds' END,
       CASE WHEN status = 'completed' THEN
           jsonb_build_object('category', 'bug', 'priority', 'p2', 'summary', 'A short summary of job ' || g)
       END,
       CASE error_class
           WHEN 'invalid' THEN 'the provider refused the input (422)'
           WHEN 'retryable' THEN 'the provider timed out after 30 s'
           WHEN 'alert' THEN 'a queue entry named another tenant than its job'
       END,
       error_class,
       created, COALESCE(finished, started, created), started, finished,
       CASE WHEN started IS NOT NULL THEN (extract(epoch FROM started) * 1000)::bigint || '-0' END,
       CASE WHEN started IS NOT NULL THEN 1 END,
       CASE WHEN status = 'scheduled' THEN now() + interval '1 hour' * (1 + g % 24) END,
       priority
FROM classed
ORDER BY g;
SQL
jobs_seconds=$(since "$start")
start=$(seconds)
q <<'SQL'
SET synchronous_commit = off;
-- The audit trail of every third job: enqueued, started if it ran, and how it ended; plus some
-- control actions (tenant '*', no job).
INSERT INTO audit_log (tenant_id, job_id, action, detail, at)
SELECT tenant_id, job_id, a.action, a.detail, a.at
FROM jobs
CROSS JOIN LATERAL (VALUES
    (1, 'enqueued', jsonb_build_object('key', job_key), created_at),
    (2, CASE WHEN started_at IS NOT NULL THEN 'started' END, jsonb_build_object('attempt', 1), started_at),
    (3, CASE status WHEN 'completed' THEN 'completed' WHEN 'cancelled' THEN 'cancelled'
                    WHEN 'failed' THEN CASE error_class WHEN 'alert' THEN 'alert' ELSE 'failed' END END,
        jsonb_build_object('attempt', attempts), finished_at)
) AS a (n, action, detail, at)
WHERE jobs.seq % 3 = 0 AND a.action IS NOT NULL
ORDER BY jobs.seq, a.n;
INSERT INTO audit_log (tenant_id, job_id, action, detail, at)
SELECT '*', NULL, CASE WHEN i % 2 = 0 THEN 'paused' ELSE 'resumed' END,
       jsonb_build_object('by', 'operator:ops', 'scope', 'queue', 'name', 'summarize'),
       now() - interval '30 days' + interval '1 hour' * i
FROM generate_series(1, 500) i;

-- The operation log: every fifth triage or summarize job that ran has two durable steps.
INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result, created_at,
                        updated_at)
SELECT 'op_' || md5(job_id || '/' || e.effect), tenant_id, job_id, 'apply', e.effect,
       CASE WHEN status = 'running' THEN 'started' ELSE 'done' END, 1,
       CASE WHEN status = 'running' THEN NULL ELSE jsonb_build_object('status', 200) END,
       started_at + e.after, started_at + e.after + interval '1 second'
FROM jobs
CROSS JOIN (VALUES ('ticket-update', interval '1 second'), ('webhook', interval '2 seconds')) AS e (effect, after)
WHERE seq % 5 = 0 AND kind IN ('triage', 'summarize') AND started_at IS NOT NULL;
SQL
rest_seconds=$(since "$start")
start=$(seconds)
q -f "$OUT/indexes.sql"
build_seconds=$(since "$start")
seed_seconds=$(awk -v a="$jobs_seconds" -v b="$rest_seconds" -v c="$build_seconds" 'BEGIN { printf "%.1f", a + b + c }')
start=$(seconds)
q -c 'VACUUM (ANALYZE) tenants, jobs, audit_log, operations'
vacuum_seconds=$(since "$start")
counts=$(q -tA -F' ' -c "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM audit_log),
    (SELECT count(*) FROM operations), pg_size_pretty(pg_total_relation_size('jobs'))")
read -r n_jobs n_audit n_ops jobs_size <<<"$counts"
echo "query-plans: seeded $n_jobs jobs, $n_audit audit rows, $n_ops operations in ${seed_seconds}s" \
  "(jobs ${jobs_seconds}s, audit and operations ${rest_seconds}s, indexes ${build_seconds}s;" \
  "VACUUM ANALYZE ${vacuum_seconds}s; jobs with indexes: $jobs_size)"
q -c "SELECT status, count(*), round(100.0 * count(*) / sum(count(*)) OVER (), 2) AS pct
      FROM jobs GROUP BY status ORDER BY 2 DESC"

# Values the statements look for, taken from the data.
val() { q -tA -c "$1"; }
MAX=9223372036854775807 # what the store passes as "below" for a first page (no cursor)
read -r JOB TENANT KEY <<<"$(val "SELECT job_id, tenant_id, job_key FROM jobs j
    WHERE seq > (SELECT max(seq) / 2 FROM jobs) AND seq % 3 = 0 AND status = 'completed'
      AND EXISTS (SELECT 1 FROM operations o WHERE o.job_id = j.job_id) ORDER BY seq LIMIT 1" | tr '|' ' ')"
# the cursor that a first page of 50 failed jobs hands out: its last row's seq
FAILED_CURSOR=$(val "SELECT seq FROM jobs WHERE status = 'failed' ORDER BY seq DESC OFFSET 49 LIMIT 1")
MID_CURSOR=$(val "SELECT max(seq) / 2 FROM jobs")

# ---------------------------------------------------------------------------------------------
# The statements: each as the store holds it, prepared with the parameter types the store binds
# (text, int8 for i64, timestamptz), then each case executed with its values, warmed up, then
# measured RUNS times under EXPLAIN ANALYZE. The store runs some statements uncached (an unnamed
# statement, planned at each execution with its values: plan_cache_mode = force_custom_plan here)
# and the others cached (a prepared statement per connection, which PostgreSQL may switch to a
# generic plan after five executions: plan_cache_mode = auto, and five executions first).
PG=crates/store/sql/postgres
WINDOW_FIRST_MAX=$(sed -n 's/^const WINDOW_FIRST_MAX: i64 = \([0-9_]*\);$/\1/p' crates/store/src/jobs/admin.rs | tr -d _)
[ -n "$WINDOW_FIRST_MAX" ] || { echo "query-plans: WINDOW_FIRST_MAX not found in crates/store/src/jobs/admin.rs" >&2; exit 1; }

plans_sql() { # run: before (without the measured indexes) or after
  local run=$1
  prep() { # name, types, file
    printf 'PREPARE %s(%s) AS\n' "$1" "$2"
    cat "$3"
    printf ';\n'
  }
  measure() { # label, EXECUTE statement, uncached|cached
    printf '\\echo @@ %s\n\\o /dev/null\n' "$1"
    if [ "$3" = cached ]; then
      printf 'SET plan_cache_mode = auto;\n'
      for _ in 1 2 3 4 5; do printf 'EXPLAIN (ANALYZE) %s;\n' "$2"; done
    else
      printf 'EXPLAIN (ANALYZE) %s;\n' "$2"
    fi
    printf '\\o\n'
    for _ in $(seq "$RUNS"); do printf 'EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) %s;\n' "$2"; done
    printf 'SET plan_cache_mode = force_custom_plan;\n'
  }
  # A list, as Store::list_jobs_admin (statement admin) and Store::list_jobs (tenant) read it:
  # $1 tenant, $2 below seq, $3 limit, $4 kind, $5 status, $6 error class, $7 created at or after,
  # $8 created before, $9 priority, then (admin) $10 key; last the status's phase. A status is
  # given in $5 and bound as the store's status_filter binds it: its phase last, and in $5 only a
  # live status (a terminal one is its phase). With a created-before bound (with the measured
  # indexes), the store first finds where the window lies in seq (created_bounds.sql) and reads it
  # window first when it holds fewer than WINDOW_FIRST_MAX jobs and more came after it; the same
  # decision is taken here.
  list() { # statement (admin | tenant), label, the values but the phase
    local args=$3 status after before
    status=$(awk -F', ' '{ print $5 }' <<<"$args")
    after=$(awk -F', ' '{ print $7 }' <<<"$args")
    before=$(awk -F', ' '{ print $8 }' <<<"$args")
    case $status in
      "'scheduled'" | "'queued'" | "'running'") args="$args, 'live'" ;;
      NULL) args="$args, NULL" ;;
      *) args=$(awk -F', ' -v OFS=', ' '{ $5 = "NULL"; print }' <<<"$args")", $status" ;;
    esac
    if [ "$run" = after ] && [ "$before" != NULL ]; then
      # as Store::window_first: window first when the window holds fewer than WINDOW_FIRST_MAX jobs
      # (counted in seq) and more came after it; not when no job came after it or none is in it
      printf '\\unset b_window_start\n\\unset b_window_end\n\\unset b_newest\n\\set window_first false\n'
      printf 'EXECUTE created_bounds(%s, %s) \\gset b_\n' "$after" "$before"
      printf '\\if :{?b_window_start}\n\\if :{?b_window_end}\n'
      printf 'SELECT greatest(:b_window_end - :b_window_start, 0) < %s' "$WINDOW_FIRST_MAX"
      printf ' AND :b_newest - :b_window_end + 1 > greatest(:b_window_end - :b_window_start, 0) AS window_first \\gset\n'
      printf '\\endif\n\\endif\n'
      printf '\\if :window_first\n'
      measure "$2 [window first]" "EXECUTE $1_window($args)" uncached
      printf '\\else\n'
      measure "$2" "EXECUTE $1_page($args)" uncached
      printf '\\endif\n'
    else
      measure "$2" "EXECUTE $1_page($args)" uncached
    fi
  }
  admin() { list admin "$@"; }
  echo "SET plan_cache_mode = force_custom_plan;"
  local page_types='text, int8, int8, text, text, text, timestamptz, timestamptz, text, text, text'
  local tenant_types='text, int8, int8, text, text, text, timestamptz, timestamptz, text, text'
  prep admin_page "$page_types" "$SQL/jobs/select_page_admin.sql"
  prep tenant_page "$tenant_types" "$SQL/jobs/select_page.sql"
  if [ "$run" = after ]; then
    prep admin_window "$page_types" "$PG/jobs/select_page_admin_window.sql"
    prep tenant_window "$tenant_types" "$PG/jobs/select_page_window.sql"
    prep created_bounds 'timestamptz, timestamptz' "$PG/jobs/created_bounds.sql"
  fi
  prep count_failed 'text, text, text, timestamptz, timestamptz' "$SQL/jobs/count_failed.sql"
  prep select_failed 'int8, int8, text, text, text, timestamptz, timestamptz' "$SQL/jobs/select_failed.sql"
  prep select_owner 'text' "$SQL/jobs/select_owner.sql"
  prep select_job 'text, text' "$SQL/jobs/select.sql"
  prep job_audit 'text, text' "$SQL/audit/select_job.sql"
  prep control_audit 'text, int8' "$SQL/control/select_audit.sql"
  prep kind_throughput 'timestamptz, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz' \
    "$SQL/console/kind_throughput.sql"
  prep kind_load 'timestamptz' "$SQL/console/kind_load.sql"
  prep tenant_load 'int8' "$SQL/console/tenant_load.sql"
  prep job_operations 'text, text' "$SQL/console/job_operations.sql"

  local top=$MAX day_ago20="now() - interval '20 days'" day_ago19="now() - interval '19 days'"
  admin "list: no filter" "NULL, $top, 51, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
  admin "list: no filter, page at the middle (cursor)" "NULL, $MID_CURSOR, 51, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
  admin "list: status=failed" "NULL, $top, 51, NULL, 'failed', NULL, NULL, NULL, NULL, NULL"
  admin "list: status=failed, second page (cursor)" "NULL, $FAILED_CURSOR, 51, NULL, 'failed', NULL, NULL, NULL, NULL, NULL"
  admin "list: status=cancelled" "NULL, $top, 51, NULL, 'cancelled', NULL, NULL, NULL, NULL, NULL"
  admin "list: status=queued" "NULL, $top, 51, NULL, 'queued', NULL, NULL, NULL, NULL, NULL"
  admin "list: status=running" "NULL, $top, 51, NULL, 'running', NULL, NULL, NULL, NULL, NULL"
  admin "list: status=completed" "NULL, $top, 51, NULL, 'completed', NULL, NULL, NULL, NULL, NULL"
  admin "list: kind=export (1 %)" "NULL, $top, 51, 'export', NULL, NULL, NULL, NULL, NULL, NULL"
  admin "list: kind=summarize (39 %)" "NULL, $top, 51, 'summarize', NULL, NULL, NULL, NULL, NULL, NULL"
  admin "list: error_class=alert" "NULL, $top, 51, NULL, NULL, 'alert', NULL, NULL, NULL, NULL"
  admin "list: status=failed, kind=summarize, error_class=retryable" \
    "NULL, $top, 51, 'summarize', 'failed', 'retryable', NULL, NULL, NULL, NULL"
  admin "list: tenant (the largest)" "'tenant-00', $top, 51, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
  admin "list: tenant (a small one), status=failed" "'tenant-42', $top, 51, NULL, 'failed', NULL, NULL, NULL, NULL, NULL"
  admin "list: key" "NULL, $top, 51, NULL, NULL, NULL, NULL, NULL, NULL, '$KEY'"
  admin "list: key, tenant" "'$TENANT', $top, 51, NULL, NULL, NULL, NULL, NULL, NULL, '$KEY'"
  admin "list: created in the last hour" "NULL, $top, 51, NULL, NULL, NULL, now() - interval '1 hour', NULL, NULL, NULL"
  admin "list: created in one hour, 20 days ago" \
    "NULL, $top, 51, NULL, NULL, NULL, $day_ago20, $day_ago20 + interval '1 hour', NULL, NULL"
  admin "list: created in one day, 20 days ago" "NULL, $top, 51, NULL, NULL, NULL, $day_ago20, $day_ago19, NULL, NULL"
  admin "list: created in one day, 20 days ago, status=failed" \
    "NULL, $top, 51, NULL, 'failed', NULL, $day_ago20, $day_ago19, NULL, NULL"
  admin "list: created in one day, 20 days ago, tenant" \
    "'tenant-03', $top, 51, NULL, NULL, NULL, $day_ago20, $day_ago19, NULL, NULL"
  admin "list: created before 20 days ago" "NULL, $top, 51, NULL, NULL, NULL, NULL, $day_ago20, NULL, NULL"
  admin "list: created from 29 to 2 days ago" \
    "NULL, $top, 51, NULL, NULL, NULL, now() - interval '29 days', now() - interval '2 days', NULL, NULL"
  admin "list: priority=high" "NULL, $top, 51, NULL, NULL, NULL, NULL, NULL, 'high', NULL"
  if [ "$run" = after ]; then
    measure "list: where a window lies (created_bounds.sql), one day 20 days ago" \
      "EXECUTE created_bounds($day_ago20, $day_ago19)" uncached
  fi
  measure "bulk retry dry run: count failed" "EXECUTE count_failed(NULL, NULL, NULL, NULL, NULL)" cached
  measure "bulk retry dry run: count failed, kind=summarize, error_class=retryable" \
    "EXECUTE count_failed(NULL, 'summarize', 'retryable', NULL, NULL)" cached
  measure "bulk retry: a batch of 100 failed" "EXECUTE select_failed(0, 100, NULL, NULL, NULL, NULL, NULL)" uncached
  measure "bulk retry: a batch of 100 failed, tenant" \
    "EXECUTE select_failed(0, 100, 'tenant-00', NULL, NULL, NULL, NULL)" uncached
  measure "job: owner" "EXECUTE select_owner('$JOB')" cached
  measure "job: record" "EXECUTE select_job('$JOB', '$TENANT')" cached
  measure "job: audit trail" "EXECUTE job_audit('$TENANT', '$JOB')" cached
  measure "job: operation log (console)" "EXECUTE job_operations('$TENANT', '$JOB')" cached
  measure "control actions (audit rows of no job)" "EXECUTE control_audit('*', 50)" cached
  measure "console: finished per kind and minute, last 5 minutes" "EXECUTE kind_throughput(now() - interval '5 minutes',
      now() - interval '4 minutes', now() - interval '3 minutes', now() - interval '2 minutes',
      now() - interval '1 minute', now())" cached
  measure "console: per kind running, waiting, oldest waiting" "EXECUTE kind_load(now())" cached
  measure "console: per tenant running and waiting" "EXECUTE tenant_load(500)" cached
  list tenant "tenant API list: tenant, kind=export" "'tenant-00', $top, 21, 'export', NULL, NULL, NULL, NULL, NULL"
  list tenant "tenant API list: tenant (a small one), status=failed" \
    "'tenant-42', $top, 21, NULL, 'failed', NULL, NULL, NULL, NULL"
  list tenant "tenant API list: tenant, status=queued" "'tenant-00', $top, 21, NULL, 'queued', NULL, NULL, NULL, NULL"
  list tenant "tenant API list: tenant, created in one day, 20 days ago" \
    "'tenant-03', $top, 21, NULL, NULL, NULL, $day_ago20, $day_ago19, NULL"
}

run_plans() { # before or after
  plans_sql "$1" >"$OUT/plans-$1.sql"
  q -f "$OUT/plans-$1.sql" >"$OUT/$1.txt"
}

# "before": without the measured indexes, kept as pg_indexes has them to build them again
{
  echo "SET maintenance_work_mem = '256MB';"
  for i in $measured; do q -tA -c "SELECT indexdef || ';' FROM pg_indexes WHERE indexname = '$i'"; done
} >"$OUT/measured.sql"
for i in $measured; do q -c "DROP INDEX $i"; done
q -c 'ANALYZE jobs, operations'
start=$(seconds)
run_plans before
echo "query-plans: plans without the indexes of $MEASURED ($(echo $measured)) run in $(since "$start")s"
start=$(seconds)
q -f "$OUT/measured.sql"
index_seconds=$(since "$start")
q -c 'ANALYZE jobs, operations'
echo "query-plans: the indexes of $MEASURED built on $n_jobs jobs in ${index_seconds}s"
q -c "SELECT indexrelid::regclass AS index, pg_size_pretty(pg_relation_size(indexrelid)) AS size
      FROM pg_index WHERE indrelid IN ('jobs'::regclass, 'operations'::regclass)
      ORDER BY pg_relation_size(indexrelid) DESC" | tee "$OUT/index-sizes.txt"
run_plans after

# The summary: per case, the plan's nodes, its buffers and its execution time, before and after.
summarize() { # file
  awk '
    function spread(list,   v, k, i, j, t) { # "fastest / median"
      k = split(list, v, " ")
      for (i = 2; i <= k; i++)
        for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
      return v[1] " / " v[int((k + 1) / 2)]
    }
    /^@@ / { name = substr($0, 4); names[++n] = name; next }
    # each run begins with the header: keep the plan of the last run, the time of every run
    /QUERY PLAN/ { nodes[name] = ""; buffers[name] = ""; removed[name] = 0; first = 1; next }
    /\(actual time=/ {
      line = $0; sub(/^ *(->  *)?/, "", line); sub(/ *\(actual time=.*/, "", line)
      sub(/ on (jobs|audit_log|operations|tenants)( [a-z_0-9]+)?$/, "", line)
      nodes[name] = (nodes[name] == "" ? "" : nodes[name] " → ") line
      next
    }
    /^ *Buffers:/ && first { b = $0; sub(/^ *Buffers: */, "", b); buffers[name] = b; first = 0; next }
    /Rows Removed by (Filter|Index Recheck):/ { removed[name] += $NF; next }
    /Execution Time:/ { times[name] = times[name] " " $3; next }
    END {
      for (i = 1; i <= n; i++) {
        k = names[i]
        printf "%s\t%s\t%s\t%d\t%s\n", k, spread(times[k]), buffers[k], removed[k], nodes[k]
      }
    }' "$1"
}
{
  echo "Query plans on $n_jobs jobs ($n_audit audit rows, $n_ops operations), $(date -u +%Y-%m-%d)," \
    "PostgreSQL $(q -tA -c 'SHOW server_version'); seeded in ${seed_seconds}s, the indexes of" \
    "$MEASURED built in ${index_seconds}s; $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)." \
    "Times in ms, fastest / median of $RUNS runs, warm cache; 'removed': rows read and thrown away by a filter."
  echo
  echo "| query | before: ms | before: removed | after: ms | after: buffers | after: removed | after: plan |"
  echo "|---|---:|---:|---:|---|---:|---|"
  # by label; "[window first]" marks the form the store chose with the measured indexes
  summarize "$OUT/before.txt" >"$OUT/before.tsv"
  summarize "$OUT/after.txt" >"$OUT/after.tsv"
  awk -F'\t' '
    NR == FNR { ms[$1] = $2; removed[$1] = $4; next }
    {
      k = $1; sub(/ \[window first\]$/, "", k)
      printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, (k in ms ? ms[k] : "—"), (k in removed ? removed[k] : "—"),
        $2, $3, $4, $5
    }' "$OUT/before.tsv" "$OUT/after.tsv"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "query-plans: full plans in $OUT/before.txt and $OUT/after.txt"

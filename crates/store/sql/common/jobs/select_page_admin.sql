-- A page of every tenant's jobs (an operator's list), newest first: $1 tenant (NULL: any), $2 seq
-- to start below, $3 limit, and the filters, each NULL for any: $4 kind, $11 phase and $5 status
-- (a status as in select_page.sql), $6 error class, $7 created at or after, $8 created before,
-- $9 priority, $10 key (exact). Run uncached, as select_page.sql: each filter set then uses its
-- index (migrations 0001, 0004, 0007, 0009; the plans are in docs/QUERY_PLANS.md, made by
-- scripts/query-plans.sh from this file).
SELECT seq, job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority
FROM jobs
WHERE seq < $2
  AND ($1 IS NULL OR tenant_id = $1)
  AND ($4 IS NULL OR kind = $4)
  AND ($11 IS NULL OR phase = $11)
  AND ($5 IS NULL OR status = $5)
  AND ($6 IS NULL OR error_class = $6)
  AND ($7 IS NULL OR created_at >= $7)
  AND ($8 IS NULL OR created_at < $8)
  AND ($9 IS NULL OR priority = $9)
  AND ($10 IS NULL OR job_key = $10)
ORDER BY seq DESC
LIMIT $3

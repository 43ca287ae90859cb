-- A page of a tenant's jobs, newest first: $1 tenant, $2 seq to start below, $3 limit, and the
-- filters, each NULL for any: $4 kind, $10 phase and $5 status (a status as the store's
-- status_filter gives it: its phase, which the indexes name instead of status, migration 0009, and
-- the status itself only where the phase does not say it, a live one), $6 error class, $7 created
-- at or after, $8 created before, $9 priority. Run uncached
-- (Session::fetch_all_uncached): PostgreSQL then plans it with the values bound, the NULL filters
-- fold away, and the others can use their indexes (jobs_by_*). A window of creation time that many
-- newer jobs follow is read window first instead (postgres/jobs/select_page_window.sql).
SELECT seq, job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority
FROM jobs
WHERE tenant_id = $1 AND seq < $2
  AND ($4 IS NULL OR kind = $4)
  AND ($10 IS NULL OR phase = $10)
  AND ($5 IS NULL OR status = $5)
  AND ($6 IS NULL OR error_class = $6)
  AND ($7 IS NULL OR created_at >= $7)
  AND ($8 IS NULL OR created_at < $8)
  AND ($9 IS NULL OR priority = $9)
ORDER BY seq DESC
LIMIT $3

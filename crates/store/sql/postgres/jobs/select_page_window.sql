-- common/jobs/select_page.sql read window first, on PostgreSQL: the same parameters, rows and
-- order, but `seq + 0` is no column an index is ordered by, so the planner cannot walk the
-- tenant's jobs down from the cursor until a page matches. It reads the rows its most selective
-- filter's index gives (jobs_by_created for the window of creation time, the jobs of every tenant
-- created in it) and keeps the tenant's newest. Chosen as select_page_admin_window.sql is, by
-- Store::list_jobs. Everything but the ORDER BY is select_page.sql's (a unit test compares them).
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
ORDER BY seq + 0 DESC
LIMIT $3

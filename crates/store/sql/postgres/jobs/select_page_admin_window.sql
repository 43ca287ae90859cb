-- common/jobs/select_page_admin.sql read window first, on PostgreSQL: the same parameters, rows
-- and order, but `seq + 0` is no column an index is ordered by, so the planner cannot walk jobs_pkey
-- down from the cursor until a page matches. It reads the rows its most selective filter's index
-- gives (jobs_by_created for the window of creation time) and keeps the newest. For a window that
-- ends before many newer jobs, which that walk would pass one by one: chosen with created_bounds.sql
-- by Store::list_jobs_admin. Everything but the ORDER BY is select_page_admin.sql's (a unit test
-- compares them).
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
ORDER BY seq + 0 DESC
LIMIT $3

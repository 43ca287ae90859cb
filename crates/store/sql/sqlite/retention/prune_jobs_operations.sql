-- The operations still `started` of one batch of finished jobs (completed, failed, cancelled) that
-- finished before $1, at most $2, oldest first (index jobs_finished): run in the transaction of
-- prune_jobs.sql, before it, as prune_jobs_audit.sql is (same choice and order). A step begun and
-- never finished belongs to its attempt; once the record is gone, a resubmission under the same id
-- counts its attempts from 1 again and must find the step new. `done` operations stay.
DELETE FROM operations
WHERE state = 'started' AND (tenant_id, job_id) IN (
    SELECT tenant_id, job_id FROM jobs
    WHERE finished_at IS NOT NULL AND finished_at < $1 AND status IN ('completed', 'failed', 'cancelled')
    ORDER BY finished_at, seq
    LIMIT $2
)

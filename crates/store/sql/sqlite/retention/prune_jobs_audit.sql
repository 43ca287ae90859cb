-- The audit rows of one batch of finished jobs (completed, failed, cancelled) that finished
-- before $1, at most $2, oldest first (index jobs_finished). Run first, in the transaction of
-- prune_jobs.sql, which deletes the same batch (same choice and order: nothing else writes in
-- between, as SQLite has one writer).
DELETE FROM audit_log
WHERE (tenant_id, job_id) IN (
    SELECT tenant_id, job_id FROM jobs
    WHERE finished_at IS NOT NULL AND finished_at < $1 AND status IN ('completed', 'failed', 'cancelled')
    ORDER BY finished_at, seq
    LIMIT $2
)

-- One batch of finished jobs (completed, failed, cancelled) that finished before $1, at most $2,
-- oldest first (index jobs_finished): the batch whose audit rows prune_jobs_audit.sql deleted.
DELETE FROM jobs
WHERE seq IN (
    SELECT seq FROM jobs
    WHERE finished_at IS NOT NULL AND finished_at < $1 AND status IN ('completed', 'failed', 'cancelled')
    ORDER BY finished_at, seq
    LIMIT $2
)

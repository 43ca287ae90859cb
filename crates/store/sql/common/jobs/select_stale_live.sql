-- Live jobs of every tenant not updated since $1, in creation order after seq $2, at most $3.
SELECT seq, job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at
FROM jobs
WHERE status IN ('queued', 'running') AND updated_at < $1 AND seq > $2
ORDER BY seq
LIMIT $3

-- A page of a tenant's jobs, newest first: $1 tenant, $2 status (NULL: any), $3 seq to start
-- below, $4 limit.
SELECT seq, job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery
FROM jobs
WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) AND seq < $3
ORDER BY seq DESC
LIMIT $4

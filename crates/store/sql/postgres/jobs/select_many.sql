-- The records of jobs $1 (any tenant: the caller checks).
SELECT job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority
FROM jobs
WHERE job_id = ANY($1)

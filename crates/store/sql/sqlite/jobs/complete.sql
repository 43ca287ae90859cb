-- Completes running attempt $3 with output $4. $1 job, $2 tenant, $5 time. Core rule:
-- JobRecord::complete.
UPDATE jobs
SET status = 'completed', progress = 100, output = $4, error_message = NULL, error_class = NULL,
    next_attempt_at = NULL, updated_at = $5, finished_at = $5
WHERE job_id = $1 AND tenant_id = $2 AND (status = 'running' AND attempts = $3)
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority

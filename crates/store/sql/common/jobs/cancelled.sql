-- The worker of running attempt $3 ends a job whose cancel was requested. $1 job, $2 tenant,
-- $3 attempt, $4 time. Core rule: JobRecord::cancelled.
UPDATE jobs
SET status = 'cancelled', updated_at = $4, finished_at = $4
WHERE job_id = $1 AND tenant_id = $2 AND status = 'running' AND attempts = $3
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority

-- Fails attempt $3 for good: allowed while it runs, or as the next attempt before it starts (a
-- job found invalid before running, scheduled or queued). $1 job, $2 tenant, $3 attempt, $4 error class, $5 message,
-- $6 time. Core rule: JobRecord::fail.
UPDATE jobs
SET status = 'failed', attempts = $3, error_class = $4, error_message = $5, next_attempt_at = NULL,
    updated_at = $6, finished_at = $6
WHERE job_id = $1 AND tenant_id = $2
  AND ((status = 'running' AND attempts = $3) OR (status IN ('scheduled', 'queued', 'running') AND attempts = $3 - 1))
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority

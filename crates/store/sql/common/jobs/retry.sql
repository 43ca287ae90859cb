-- Puts running attempt $3 back in the queue for a later attempt, if attempts remain. $1 job,
-- $2 tenant, $3 attempt, $4 error class, $5 message, $6 when the next attempt is due, $7 time.
-- Core rule: JobRecord::retry (a job whose cancel was requested is not retried).
UPDATE jobs
SET status = 'queued', stage = NULL, progress = 0, error_class = $4, error_message = $5,
    next_attempt_at = $6, updated_at = $7
WHERE job_id = $1 AND tenant_id = $2
  AND (status = 'running' AND attempts = $3 AND attempts < max_attempts AND cancel_requested_at IS NULL)
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority

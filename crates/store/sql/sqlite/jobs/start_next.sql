-- Starts (from scheduled, queued or running) the attempt after the last one started
-- (attempts + 1) for a queue delivery, if attempts remain and the delivery is newer than the one
-- that started the running attempt. $1 job, $2 tenant, $3 time, $4 entry id, $5 delivery count,
-- $6 the attempt the entry was enqueued for. Core rule: JobRecord::start_delivery.
UPDATE jobs
SET status = 'running', attempts = attempts + 1, stage = NULL, progress = 0, next_attempt_at = NULL,
    started_at = $3, updated_at = $3, lease_entry = $4, lease_delivery = $5
WHERE job_id = $1 AND tenant_id = $2 AND status IN ('scheduled', 'queued', 'running')
  AND attempts < max_attempts
  AND CASE WHEN status = 'running' AND lease_entry = $4 THEN lease_delivery < $5
           WHEN status = 'running' AND lease_entry IS NULL THEN TRUE
           ELSE attempts < $6 END
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority

-- A failed or cancelled job back in the queue under the same id, with $3 more attempts after those
-- used. $1 job, $2 tenant, $3 budget, $4 time. The last run's error, output and stage are cleared;
-- the operation log is not. Core rule: JobRecord::requeue.
UPDATE jobs
SET status = 'queued', max_attempts = attempts + $3, stage = NULL, progress = 0, next_attempt_at = NULL,
    output = NULL, error_message = NULL, error_class = NULL, updated_at = $4, finished_at = NULL,
    cancel_requested_at = NULL
WHERE job_id = $1 AND tenant_id = $2 AND status IN ('failed', 'cancelled')
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority

-- A cancel request. $1 job, $2 tenant, $3 time. A scheduled or queued job (a retry waiting
-- included) becomes 'cancelled' at once; a running one keeps running with cancel_requested_at (the first request's
-- time), for its worker to end. Core rule: JobRecord::cancel.
UPDATE jobs
SET status = CASE WHEN status = 'running' THEN 'running' ELSE 'cancelled' END,
    cancel_requested_at = CASE WHEN status = 'running' THEN COALESCE(cancel_requested_at, $3) ELSE cancel_requested_at END,
    next_attempt_at = CASE WHEN status = 'running' THEN next_attempt_at ELSE NULL END,
    finished_at = CASE WHEN status = 'running' THEN finished_at ELSE $3 END,
    -- A repeated request for a running job changes nothing (the reconciler's age of a live record
    -- included).
    updated_at = CASE WHEN status = 'running' AND cancel_requested_at IS NOT NULL THEN updated_at ELSE $3 END
WHERE job_id = $1 AND tenant_id = $2 AND status IN ('scheduled', 'queued', 'running')
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority

-- A pending record, unless the job id exists. $1 job, $2 tenant, $3 kind, $4 key, $5 input,
-- $6 status ('scheduled' for a run_at in the future, else 'queued'), $7 max attempts, $8 time,
-- $9 run_at (NULL: none), $10 priority.
INSERT INTO jobs (job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, run_at, priority)
VALUES ($1, $2, $3, $4, $5, $6, NULL, 0, 0, $7, NULL, NULL, NULL, NULL, $8, $8, NULL, NULL, NULL, NULL, $9, $10)
ON CONFLICT (job_id) DO NOTHING
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority

-- One job of a bulk retry back in the queue, as requeue.sql puts one back, guarded by the bulk
-- retry's filter as well as its status: only while the job is still `failed` (a job the tenant
-- retried and cancelled since the bulk retry found it stays cancelled) and still matches the
-- filter (a job that failed again with another class is left alone). $1 job, $2 tenant, $3 budget,
-- $4 time; the filters, each NULL for any: $5 tenant, $6 kind, $7 error class, $8 created at or
-- after, $9 created before. Core rule: JobRecord::requeue.
UPDATE jobs
SET status = 'queued', max_attempts = attempts + $3, stage = NULL, progress = 0, next_attempt_at = NULL,
    output = NULL, error_message = NULL, error_class = NULL, updated_at = $4, finished_at = NULL,
    cancel_requested_at = NULL
WHERE job_id = $1 AND tenant_id = $2 AND status = 'failed'
  AND ($5 IS NULL OR tenant_id = $5)
  AND ($6 IS NULL OR kind = $6)
  AND ($7 IS NULL OR error_class = $7)
  AND ($8 IS NULL OR created_at >= $8)
  AND ($9 IS NULL OR created_at < $9)
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority

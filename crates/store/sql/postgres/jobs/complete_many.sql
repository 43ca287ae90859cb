-- Many completions in one statement: each running attempt completes with its output. No audit
-- row: a job's 'completed' entry is read from its record (see audit.rs). $1 jobs, $2 tenants,
-- $3 attempts, $4 outputs, $5 time. Core rule: JobRecord::complete.
WITH u AS (
    UPDATE jobs
    SET status = 'completed', progress = 100, output = v.output, error_message = NULL, error_class = NULL,
        next_attempt_at = NULL, updated_at = $5, finished_at = $5
    FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::jsonb[]) AS v(job, tenant, attempt, output)
    WHERE jobs.job_id = v.job AND jobs.tenant_id = v.tenant AND jobs.status = 'running'
      AND jobs.attempts = v.attempt
    RETURNING jobs.*
)
SELECT job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority
FROM u

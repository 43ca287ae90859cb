-- Many completions in one statement: each running attempt completes with its output, and with the
-- stage of a progress write of the same batch it supersedes (NULL: the stage stays). No audit row:
-- a job's 'completed' entry is read from its record (see audit.rs). $1 jobs, $2 tenants,
-- $3 attempts, $4 outputs, $5 time, $6 stages. Core rule: JobRecord::complete.
UPDATE jobs
SET status = 'completed', stage = COALESCE(v.stage, jobs.stage), progress = 100, output = v.output,
    error_message = NULL, error_class = NULL, next_attempt_at = NULL, updated_at = $5, finished_at = $5
FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::jsonb[], $6::text[]) AS v(job, tenant, attempt, output, stage)
WHERE jobs.job_id = v.job AND jobs.tenant_id = v.tenant AND jobs.status = 'running'
  AND jobs.attempts = v.attempt
RETURNING jobs.job_id, jobs.tenant_id, jobs.kind, jobs.job_key, jobs.input, jobs.status, jobs.stage,
    jobs.progress, jobs.attempts, jobs.max_attempts, jobs.next_attempt_at, jobs.output, jobs.error_message,
    jobs.error_class, jobs.created_at, jobs.updated_at, jobs.started_at, jobs.finished_at, jobs.lease_entry,
    jobs.lease_delivery, jobs.cancel_requested_at, jobs.run_at, jobs.priority

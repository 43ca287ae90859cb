-- Many pending records in one statement; existing ids are left alone (and not returned). No audit
-- row: a job's 'enqueued' entry is read from its record (see audit.rs). $1 jobs, $2 tenants,
-- $3 kinds, $4 keys, $5 inputs, $6 max attempts, $7 time, $8 statuses ('scheduled' for a run_at in
-- the future, else 'queued'), $9 run_at (NULL: none), $10 priorities. Rows are inserted in job-id
-- order, so concurrent batches lock in the same order, and among requests for one id in request
-- order, so the row written is the first request's (the one told it created the job).
WITH v AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::int4[], $8::text[],
                         $9::timestamptz[], $10::text[])
    WITH ORDINALITY AS v(job, tenant, kind, job_key, input, max_attempts, status, run_at, priority, ord)
)
INSERT INTO jobs (job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
   next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
   lease_entry, lease_delivery, run_at, priority)
SELECT job, tenant, kind, job_key, input, status, NULL, 0, 0, max_attempts, NULL, NULL, NULL, NULL, $7, $7,
       NULL, NULL, NULL, NULL, run_at, priority
FROM v ORDER BY job, ord
ON CONFLICT (job_id) DO NOTHING
RETURNING job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
   next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
   lease_entry, lease_delivery, cancel_requested_at, run_at, priority

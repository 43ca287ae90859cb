-- Many starts in one statement, each with its 'started' audit row: each job (scheduled, queued or
-- running) starts the attempt after its last one started (attempts + 1) for a queue delivery, if
-- attempts remain and the delivery is newer than the one that started the running attempt.
-- $1 jobs, $2 tenants, $3 entry ids, $4 delivery counts, $5 the attempts the entries were enqueued
-- for, $6 time. Core rule: JobRecord::start_delivery.
WITH u AS (
    UPDATE jobs
    SET status = 'running', attempts = jobs.attempts + 1, stage = NULL, progress = 0, next_attempt_at = NULL,
        started_at = $6, updated_at = $6, lease_entry = v.entry, lease_delivery = v.delivery
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::int4[])
         AS v(job, tenant, entry, delivery, entry_attempt)
    WHERE jobs.job_id = v.job AND jobs.tenant_id = v.tenant AND jobs.status IN ('scheduled', 'queued', 'running')
      AND jobs.attempts < jobs.max_attempts
      AND CASE WHEN jobs.status = 'running' AND jobs.lease_entry = v.entry THEN jobs.lease_delivery < v.delivery
               WHEN jobs.status = 'running' AND jobs.lease_entry IS NULL THEN TRUE
               ELSE jobs.attempts < v.entry_attempt END
    RETURNING jobs.*
), a AS (
    INSERT INTO audit_log (tenant_id, job_id, action, detail, at)
    SELECT tenant_id, job_id, 'started', jsonb_build_object('attempt', attempts), $6 FROM u
)
SELECT job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority
FROM u

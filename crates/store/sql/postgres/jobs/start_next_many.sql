-- Many starts in one statement: each job (scheduled, queued or running) starts the attempt after
-- its last one started (attempts + 1) for a queue delivery, if attempts remain and the delivery is
-- newer than the one that started the running attempt. The attempt's start is kept in the record
-- (attempt_starts, by attempt number; migration 0010), not in an audit row: a job's trail reads it
-- from there (see audit.rs). $1 jobs, $2 tenants, $3 entry ids, $4 delivery counts, $5 the attempts
-- the entries were enqueued for, $6 time. Core rule: JobRecord::start_delivery.
UPDATE jobs
SET status = 'running', attempts = jobs.attempts + 1, stage = NULL, progress = 0, next_attempt_at = NULL,
    started_at = $6, updated_at = $6, lease_entry = v.entry, lease_delivery = v.delivery,
    attempt_starts[jobs.attempts + 1] = $6
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::int4[])
     AS v(job, tenant, entry, delivery, entry_attempt)
WHERE jobs.job_id = v.job AND jobs.tenant_id = v.tenant AND jobs.status IN ('scheduled', 'queued', 'running')
  AND jobs.attempts < jobs.max_attempts
  AND CASE WHEN jobs.status = 'running' AND jobs.lease_entry = v.entry THEN jobs.lease_delivery < v.delivery
           WHEN jobs.status = 'running' AND jobs.lease_entry IS NULL THEN TRUE
           ELSE jobs.attempts < v.entry_attempt END
RETURNING jobs.job_id, jobs.tenant_id, jobs.kind, jobs.job_key, jobs.input, jobs.status, jobs.stage,
    jobs.progress, jobs.attempts, jobs.max_attempts, jobs.next_attempt_at, jobs.output, jobs.error_message,
    jobs.error_class, jobs.created_at, jobs.updated_at, jobs.started_at, jobs.finished_at, jobs.lease_entry,
    jobs.lease_delivery, jobs.cancel_requested_at, jobs.run_at, jobs.priority

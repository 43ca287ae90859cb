-- Many pending records in one statement, each new one with its 'enqueued' audit row; existing ids
-- are left alone (and not returned). $1 jobs, $2 tenants, $3 tickets, $4 revisions, $5 max
-- attempts, $6 time. Rows are inserted in job-id order, so concurrent batches lock in the same
-- order, and among requests for one id in request order, so the row written is the first
-- request's (the one told it created the job).
WITH v AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int4[])
    WITH ORDINALITY AS v(job, tenant, ticket, revision, max_attempts, ord)
), ins AS (
    INSERT INTO jobs (job_id, tenant_id, ticket_id, ticket_revision, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery)
    SELECT job, tenant, ticket, revision, 'queued', NULL, 0, 0, max_attempts, NULL, NULL, NULL, NULL, $6, $6,
           NULL, NULL, NULL, NULL
    FROM v ORDER BY job, ord
    ON CONFLICT (job_id) DO NOTHING
    RETURNING job_id, tenant_id, ticket_id, ticket_revision, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery
), a AS (
    INSERT INTO audit_log (tenant_id, job_id, action, detail, at)
    SELECT tenant_id, job_id, 'enqueued',
           jsonb_build_object('ticket_id', ticket_id, 'ticket_revision', ticket_revision), $6
    FROM ins
)
SELECT job_id, tenant_id, ticket_id, ticket_revision, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery
FROM ins

-- A pending record, unless the job id exists. $1 job, $2 tenant, $3 ticket, $4 revision, $5 status
-- ('queued'), $6 max attempts, $7 time.
INSERT INTO jobs (job_id, tenant_id, ticket_id, ticket_revision, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery)
VALUES ($1, $2, $3, $4, $5, NULL, 0, 0, $6, NULL, NULL, NULL, NULL, $7, $7, NULL, NULL, NULL, NULL)
ON CONFLICT (job_id) DO NOTHING
RETURNING job_id, tenant_id, ticket_id, ticket_revision, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery

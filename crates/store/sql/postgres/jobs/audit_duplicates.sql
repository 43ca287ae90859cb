-- A 'duplicate_enqueue' audit row per request for an existing job: $1 tenants, $2 jobs, $3 details,
-- $4 time.
INSERT INTO audit_log (tenant_id, job_id, action, detail, at)
SELECT tenant, job, 'duplicate_enqueue', detail, $4
FROM UNNEST($1::text[], $2::text[], $3::jsonb[]) AS v(tenant, job, detail)

-- The control actions recorded under $1 (a tenant, or '*' for those of no one tenant): audit rows
-- without a job, newest first, at most $2.
SELECT job_id, action, detail, at FROM audit_log WHERE tenant_id = $1 AND job_id IS NULL
ORDER BY seq DESC
LIMIT $2

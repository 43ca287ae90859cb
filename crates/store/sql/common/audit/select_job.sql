-- The audit trail of one job, oldest first: $1 tenant, $2 job.
SELECT job_id, action, detail, at FROM audit_log WHERE tenant_id = $1 AND job_id = $2 ORDER BY seq

-- The audit rows of one job, in the order appended: $1 tenant, $2 job. (Its 'enqueued' and
-- 'completed' entries are read from its record: see audit.rs.)
SELECT job_id, action, detail, at FROM audit_log WHERE tenant_id = $1 AND job_id = $2 ORDER BY seq

-- One audit row: $1 tenant, $2 job (NULL: none), $3 action, $4 detail, $5 time.
INSERT INTO audit_log (tenant_id, job_id, action, detail, at) VALUES ($1, $2, $3, $4, $5)

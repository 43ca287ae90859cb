-- The next failed jobs a bulk retry takes, in creation order after seq $1, at most $2, matching
-- the filters, each NULL for any: $3 tenant, $4 kind, $5 error class, $6 created at or after,
-- $7 created before. Run uncached, as select_page.sql. The failed jobs are those of phase
-- 'failed' (a terminal status is its own phase, migration 0009), which the indexes name: every
-- tenant's in jobs_failed_cancelled, one tenant's in jobs_by_tenant_phase.
SELECT seq, job_id, tenant_id, kind
FROM jobs
WHERE phase = 'failed' AND seq > $1
  AND ($3 IS NULL OR tenant_id = $3)
  AND ($4 IS NULL OR kind = $4)
  AND ($5 IS NULL OR error_class = $5)
  AND ($6 IS NULL OR created_at >= $6)
  AND ($7 IS NULL OR created_at < $7)
ORDER BY seq
LIMIT $2

-- console.tenant_load: the first $1 tenants by id, each with its live jobs: how many run, how many
-- wait (scheduled or queued). The live jobs (phase 'live', migration 0009) are read once, through
-- the partial index jobs_live, and grouped.
SELECT t.tenant_id, t.name,
       COALESCE(l.running, 0) AS running,
       COALESCE(l.queued, 0) AS queued
FROM tenants t
LEFT JOIN (
    SELECT tenant_id,
           SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running,
           SUM(CASE WHEN status = 'running' THEN 0 ELSE 1 END) AS queued
    FROM jobs
    WHERE phase = 'live'
    GROUP BY tenant_id
) l ON l.tenant_id = t.tenant_id
ORDER BY t.tenant_id
LIMIT $1

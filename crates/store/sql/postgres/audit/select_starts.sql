-- Each attempt's start as the record keeps it (migration 0010), in attempt order: the attempt
-- number and when it started. $1 tenant, $2 job.
SELECT i AS attempt, attempt_starts[i] AS at
FROM jobs, generate_subscripts(attempt_starts, 1) AS i
WHERE tenant_id = $1 AND job_id = $2 AND attempt_starts[i] IS NOT NULL
ORDER BY i

-- Many progress writes in one statement (one per job): each running attempt's stage and progress.
-- $1 jobs, $2 tenants, $3 attempts, $4 stages, $5 percents, $6 time. Returns the jobs written.
-- Core rule: JobRecord::progress.
UPDATE jobs
SET stage = v.stage, progress = v.progress, updated_at = $6
FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::text[], $5::int4[]) AS v(job, tenant, attempt, stage, progress)
WHERE jobs.job_id = v.job AND jobs.tenant_id = v.tenant AND jobs.status = 'running' AND jobs.attempts = v.attempt
RETURNING jobs.job_id

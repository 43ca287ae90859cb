-- Many progress writes in one statement (one per job): each running attempt's stage and progress.
-- $1 jobs, $2 tenants, $3 attempts, $4 stages, $5 percents, $6 time, $7 advisory. Returns the jobs
-- written. Core rule: JobRecord::progress.
-- With $7 true (the transaction holds nothing but this statement) the transaction commits without
-- waiting for its WAL flush (synchronous_commit = off for it alone): progress is advisory, the
-- next write supersedes it, and any later commit flushes it too (WAL is flushed in order). A crash
-- of PostgreSQL loses at most what the WAL writer had not flushed yet (about 3 ×
-- wal_writer_delay): the record then shows an earlier stage until the job's next write.
WITH advisory AS MATERIALIZED (
    SELECT CASE WHEN $7::bool THEN set_config('synchronous_commit', 'off', true) END
)
UPDATE jobs
SET stage = v.stage, progress = v.progress, updated_at = $6
FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::text[], $5::int4[]) AS v(job, tenant, attempt, stage, progress),
    advisory
WHERE jobs.job_id = v.job AND jobs.tenant_id = v.tenant AND jobs.status = 'running' AND jobs.attempts = v.attempt
RETURNING jobs.job_id

-- One batch of finished jobs (completed, failed, cancelled) that finished before $1, at most $2,
-- oldest first (index jobs_finished), deleted with their audit rows and their operations still
-- `started` in one statement (a step begun and never finished belongs to its attempt: once the
-- record is gone, a resubmission under the same id counts its attempts from 1 again and must find
-- the step new, not owned by the old life's attempt; `done` operations stay for the operations'
-- retention, see crates/store/src/retention.rs). The batch's rows are locked first; a row a
-- concurrent writer holds (a retry on request) is skipped, never waited for, and a job that is
-- live again (retried) is no longer chosen. Returns the counts.
WITH doomed AS (
    SELECT job_id, tenant_id FROM jobs
    WHERE finished_at IS NOT NULL AND finished_at < $1 AND status IN ('completed', 'failed', 'cancelled')
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), audit AS (
    DELETE FROM audit_log USING doomed
    WHERE audit_log.tenant_id = doomed.tenant_id AND audit_log.job_id = doomed.job_id
    RETURNING 1
), started AS (
    DELETE FROM operations USING doomed
    WHERE operations.tenant_id = doomed.tenant_id AND operations.job_id = doomed.job_id
      AND operations.state = 'started'
    RETURNING 1
), gone AS (
    DELETE FROM jobs USING doomed WHERE jobs.job_id = doomed.job_id
    RETURNING 1
)
SELECT (SELECT COUNT(*) FROM gone) AS jobs, (SELECT COUNT(*) FROM audit) AS audit_rows,
       (SELECT COUNT(*) FROM started) AS operations

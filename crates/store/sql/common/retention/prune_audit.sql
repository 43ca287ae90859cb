-- One batch of audit rows older than $1, at most $2, oldest first (index audit_by_time), that
-- concern no job or a job that no longer exists (rows appended while their job was being pruned,
-- or by a service about no job). Rows of existing jobs are kept.
DELETE FROM audit_log
WHERE at < $1 AND seq IN (
    SELECT a.seq FROM audit_log a
    WHERE a.at < $1
      AND (a.job_id IS NULL OR NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = a.job_id))
    ORDER BY a.at
    LIMIT $2
)

-- One batch of the operation log, at most $2 rows, last written before $1, oldest first (index
-- operations_by_time). An operation is kept while its job's record exists, however old: a retry of
-- a finished job (kept for the records' retention) must find its steps done, not run them again.
DELETE FROM operations
WHERE updated_at < $1 AND operation_id IN (
    SELECT o.operation_id FROM operations o
    WHERE o.updated_at < $1
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = o.job_id)
    ORDER BY o.updated_at
    LIMIT $2
)

-- One batch of the operation log, at most $2 rows, begun and last written before $1, oldest first
-- (index operations_by_time, on created_at: a key that finishing an operation does not change, so
-- the finish is a HOT update on PostgreSQL; updated_at, unindexed, is checked on each row read). An
-- operation is kept while its job's record exists, however old: a retry of a finished job (kept
-- for the records' retention) must find its steps done, not run them again.
DELETE FROM operations
WHERE created_at < $1 AND updated_at < $1 AND operation_id IN (
    SELECT o.operation_id FROM operations o
    WHERE o.created_at < $1 AND o.updated_at < $1
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = o.job_id)
    ORDER BY o.created_at
    LIMIT $2
)

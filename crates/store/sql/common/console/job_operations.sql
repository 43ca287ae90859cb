-- console.job_operations: the operation log of job $2 of tenant $1 — its durable steps, in the
-- order they were first begun (index operations_by_job).
SELECT operation_id, stage, effect, state, attempt, result, created_at, updated_at
FROM operations
WHERE tenant_id = $1 AND job_id = $2
ORDER BY created_at, operation_id

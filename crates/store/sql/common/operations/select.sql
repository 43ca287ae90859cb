-- $1 operation, $2 tenant.
SELECT state, attempt, result FROM operations WHERE operation_id = $1 AND tenant_id = $2

-- The stored result of an operation: $1 operation, $2 tenant.
SELECT result FROM operations WHERE operation_id = $1 AND tenant_id = $2

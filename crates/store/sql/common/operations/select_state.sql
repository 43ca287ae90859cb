-- $1 operation, $2 tenant.
SELECT state FROM operations WHERE operation_id = $1 AND tenant_id = $2

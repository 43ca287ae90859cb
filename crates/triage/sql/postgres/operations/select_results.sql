-- The owners and stored results of operations $1 (any tenant: the caller checks).
SELECT operation_id, tenant_id, result FROM operations WHERE operation_id = ANY($1)

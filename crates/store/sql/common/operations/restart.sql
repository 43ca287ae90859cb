-- Hands a started operation to attempt $3: $1 operation, $2 tenant, $4 time.
UPDATE operations SET attempt = $3, updated_at = $4
WHERE operation_id = $1 AND tenant_id = $2 AND state = 'started'

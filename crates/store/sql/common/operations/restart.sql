-- Hands a started operation to attempt $3: $1 operation, $2 tenant, $4 time. Never back to an
-- older attempt: a superseded attempt that begins the step after the attempt that took over it
-- leaves the operation (and its finish) to the newer one.
UPDATE operations SET attempt = $3, updated_at = $4
WHERE operation_id = $1 AND tenant_id = $2 AND state = 'started' AND attempt <= $3

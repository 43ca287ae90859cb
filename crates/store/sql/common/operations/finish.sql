-- Records an operation started by attempt $5 as done with result $3: $1 operation, $2 tenant, $4
-- time. An operation a later attempt has begun since is left to that attempt.
UPDATE operations SET state = 'done', result = $3, updated_at = $4
WHERE operation_id = $1 AND tenant_id = $2 AND state = 'started' AND attempt = $5

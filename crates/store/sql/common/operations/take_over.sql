-- Hands an operation started by attempt $5 of an earlier life of its job id to attempt $3 of the
-- current one: $1 operation, $2 tenant, $4 time. Only from that owner, so a concurrent change
-- (a finish, another take-over) wins and the begin reads the row again.
UPDATE operations SET attempt = $3, updated_at = $4
WHERE operation_id = $1 AND tenant_id = $2 AND state = 'started' AND attempt = $5

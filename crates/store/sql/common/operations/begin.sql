-- Records an operation as started, unless it is recorded already. $1 operation, $2 tenant, $3 job,
-- $4 stage, $5 effect, $6 attempt, $7 time.
INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result,
                        created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, 'started', $6, NULL, $7, $7)
ON CONFLICT (operation_id) DO NOTHING
RETURNING operation_id

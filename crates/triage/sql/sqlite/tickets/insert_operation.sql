-- The triage write's operation row, recorded done with the written result $5, unless recorded
-- already. $1 operation, $2 tenant, $3 job, $4 attempt, $6 time, $7 stage, $8 effect.
INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result,
                        created_at, updated_at)
VALUES ($1, $2, $3, $7, $8, 'done', $4, $5, $6, $6)
ON CONFLICT (operation_id) DO NOTHING
RETURNING operation_id

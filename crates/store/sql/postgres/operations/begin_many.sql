-- Many operations recorded as started in one statement, as begin.sql for each row; those recorded
-- already are left alone (and not returned). $1 operations, $2 tenants, $3 jobs, $4 stages,
-- $5 effects, $6 attempts, $7 time. The batch names each operation once.
INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result,
                        created_at, updated_at)
SELECT v.op, v.tenant, v.job, v.stage, v.effect, 'started', v.attempt, NULL, $7, $7
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[])
     AS v(op, tenant, job, stage, effect, attempt)
ON CONFLICT (operation_id) DO NOTHING
RETURNING operation_id

-- Many operations, each still started by the given attempt, recorded as done in one statement,
-- as finish.sql for each row. $1 operations, $2 tenants, $3 results, $4 time, $5 attempts. The
-- batch names each operation once. The rows are locked in operation id order first (cur), so two
-- batches sharing operations cannot deadlock. Returns the operations it finished.
WITH v AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $5::int4[]) AS v(op, tenant, result, attempt)
), cur AS (
    SELECT o.operation_id
    FROM operations o JOIN v ON o.operation_id = v.op AND o.tenant_id = v.tenant
    WHERE o.state = 'started' AND o.attempt = v.attempt
    ORDER BY o.operation_id
    FOR UPDATE OF o
)
UPDATE operations o SET state = 'done', result = v.result, updated_at = $4
FROM cur JOIN v ON v.op = cur.operation_id
WHERE o.operation_id = cur.operation_id AND o.state = 'started' AND o.attempt = v.attempt
RETURNING o.operation_id

-- Many started operations recorded as done in one statement, as finish.sql for each row. $1
-- operations, $2 tenants, $3 results, $4 time. The batch names each operation once. Returns the
-- operations it finished.
UPDATE operations o SET state = 'done', result = v.result, updated_at = $4
FROM UNNEST($1::text[], $2::text[], $3::jsonb[]) AS v(op, tenant, result)
WHERE o.operation_id = v.op AND o.tenant_id = v.tenant AND o.state = 'started'
RETURNING o.operation_id

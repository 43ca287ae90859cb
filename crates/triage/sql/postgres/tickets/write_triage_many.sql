-- Many ticket triage writes in one statement, as write_triage.sql for each row (the batch names
-- each ticket once). $1 operation ids, $2 tenants, $3 jobs, $4 attempts, $5 tickets, $6 triage
-- values, $7 their revisions, $8 written results, $9 superseded results, $10 time, $11 stages,
-- $12 effects. Returns each new operation's id and result.
WITH v AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::jsonb[], $7::int8[],
                         $8::jsonb[], $9::jsonb[], $11::text[], $12::text[])
    AS v(op, tenant, job, attempt, ticket, triage, revision, written, skipped, stage, effect)
), cur AS (
    SELECT k.tenant_id, k.ticket_id, COALESCE((k.triage->>'revision')::bigint, 0) AS stored
    FROM tickets k JOIN v ON k.tenant_id = v.tenant AND k.ticket_id = v.ticket
    ORDER BY k.tenant_id, k.ticket_id
    FOR UPDATE OF k
), o AS (
    INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result,
                            created_at, updated_at)
    SELECT v.op, v.tenant, v.job, v.stage, v.effect, 'done', v.attempt,
           CASE WHEN cur.stored <= v.revision THEN v.written
                ELSE v.skipped || jsonb_build_object('superseded_by', cur.stored) END,
           $10, $10
    FROM v JOIN cur ON cur.tenant_id = v.tenant AND cur.ticket_id = v.ticket
    ON CONFLICT (operation_id) DO NOTHING
    RETURNING operation_id, result
), u AS (
    UPDATE tickets t SET triage = v.triage, updated_at = $10
    FROM o JOIN v ON v.op = o.operation_id
    WHERE t.tenant_id = v.tenant AND t.ticket_id = v.ticket AND (o.result->>'written')::boolean
    RETURNING 1
)
SELECT operation_id, result FROM o

-- One ticket triage write in one statement. The ticket row is locked first (cur), so the stored
-- revision it reads is the latest and stays so until the update; the operation row is inserted
-- only while the ticket exists (tickets are never deleted), with the written result when the
-- stored triage is not newer and the superseded one otherwise; the ticket is updated only if the
-- operation row was new and says written. Returns the new operation's result, or nothing when the
-- operation was already recorded or the ticket is missing. $1 operation id, $2 tenant, $3 job,
-- $4 attempt, $5 written result, $6 time, $7 ticket, $8 triage, $9 its revision, $10 the
-- superseded result (its superseded_by is set here), $11 stage, $12 effect.
WITH cur AS (
    SELECT COALESCE((triage->>'revision')::bigint, 0) AS stored
    FROM tickets WHERE tenant_id = $2 AND ticket_id = $7 FOR UPDATE
), o AS (
    INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result,
                            created_at, updated_at)
    SELECT $1, $2, $3, $11, $12, 'done', $4,
           CASE WHEN cur.stored <= $9 THEN $5
                ELSE $10::jsonb || jsonb_build_object('superseded_by', cur.stored) END,
           $6, $6
    FROM cur
    ON CONFLICT (operation_id) DO NOTHING
    RETURNING operation_id, result
), u AS (
    UPDATE tickets SET triage = $8, updated_at = $6 FROM o
    WHERE tenant_id = $2 AND ticket_id = $7 AND (o.result->>'written')::boolean
    RETURNING 1
)
SELECT result FROM o

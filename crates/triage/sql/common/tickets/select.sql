-- $1 tenant, $2 ticket.
SELECT tenant_id, ticket_id, revision, subject, body, triage, created_at, updated_at
FROM tickets
WHERE tenant_id = $1 AND ticket_id = $2

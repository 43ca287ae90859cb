-- Creates a ticket at revision 1, or updates its text and bumps its revision. $1 tenant, $2 ticket,
-- $3 subject, $4 body, $5 time.
INSERT INTO tickets (tenant_id, ticket_id, revision, subject, body, triage, created_at, updated_at)
VALUES ($1, $2, 1, $3, $4, NULL, $5, $5)
ON CONFLICT (tenant_id, ticket_id) DO UPDATE
SET revision = tickets.revision + 1, subject = excluded.subject, body = excluded.body,
    updated_at = excluded.updated_at
RETURNING tenant_id, ticket_id, revision, subject, body, triage, created_at, updated_at

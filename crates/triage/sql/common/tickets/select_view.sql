-- A ticket as the pipeline reads it, with its tenant's webhook URL. $1 tenant, $2 ticket.
SELECT t.tenant_id, t.ticket_id, t.revision, t.subject, t.body, n.webhook_url
FROM tickets t JOIN tenants n ON n.tenant_id = t.tenant_id
WHERE t.tenant_id = $1 AND t.ticket_id = $2

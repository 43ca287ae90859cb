-- The ticket revision of the triage a ticket holds (0: none). $1 tenant, $2 ticket.
SELECT COALESCE(json_extract(triage, '$.revision'), 0) FROM tickets WHERE tenant_id = $1 AND ticket_id = $2

-- $1 tenant, $2 ticket, $3 triage, $4 time.
UPDATE tickets SET triage = $3, updated_at = $4 WHERE tenant_id = $1 AND ticket_id = $2

-- Many tickets as the pipeline reads them, with their tenants' webhook URLs: $1 tenants,
-- $2 tickets. One primary-key lookup per key: the LATERAL subquery with LIMIT cannot be turned
-- into a hash join over the whole table, whatever plan the statistics suggest.
SELECT t.tenant_id, t.ticket_id, t.revision, t.subject, t.body, n.webhook_url
FROM UNNEST($1::text[], $2::text[]) AS k(tenant, ticket)
CROSS JOIN LATERAL (SELECT * FROM tickets WHERE tenant_id = k.tenant AND ticket_id = k.ticket LIMIT 1) t
JOIN tenants n ON n.tenant_id = t.tenant_id

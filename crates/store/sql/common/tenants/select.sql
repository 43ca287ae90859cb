-- $1 tenant.
SELECT tenant_id, name, webhook_url, created_at FROM tenants WHERE tenant_id = $1

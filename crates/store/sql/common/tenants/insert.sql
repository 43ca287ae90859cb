-- $1 tenant, $2 name, $3 API key hash, $4 webhook URL, $5 time.
INSERT INTO tenants (tenant_id, name, api_key_hash, webhook_url, created_at) VALUES ($1, $2, $3, $4, $5)

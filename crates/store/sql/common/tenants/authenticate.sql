-- The tenant whose API key hashes to $1.
SELECT tenant_id, api_key_hash FROM tenants WHERE api_key_hash = $1

-- $1 operator name, $2 key hash, $3 time.
INSERT INTO operator_keys (name, key_hash, created_at) VALUES ($1, $2, $3)

-- The operator whose key hashes to $1.
SELECT name, key_hash FROM operator_keys WHERE key_hash = $1

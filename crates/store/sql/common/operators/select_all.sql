-- Every operator, by name (never a key or its hash).
SELECT name, created_at FROM operator_keys ORDER BY name

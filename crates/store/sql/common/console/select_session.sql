-- console.select_session: the session whose token hashes to $1, unless it expired by $2 or its
-- operator was revoked since (primary key, then operator_keys' primary key).
SELECT s.token_hash, s.operator, s.csrf, s.created_at, s.expires_at
FROM console_sessions s
JOIN operator_keys o ON o.name = s.operator
WHERE s.token_hash = $1 AND s.expires_at > $2

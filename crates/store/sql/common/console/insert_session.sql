-- console.insert_session: a console login. $1 token hash, $2 operator, $3 CSRF token, $4 created
-- at, $5 expires at.
INSERT INTO console_sessions (token_hash, operator, csrf, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5)

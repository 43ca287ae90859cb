-- console.delete_session: a logout. $1 token hash.
DELETE FROM console_sessions WHERE token_hash = $1

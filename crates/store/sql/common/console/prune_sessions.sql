-- console.prune_sessions: sessions expired by $1 (index console_sessions_expiry).
DELETE FROM console_sessions WHERE expires_at <= $1

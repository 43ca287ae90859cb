-- The operator console (/console): its login sessions, and the index its job page reads a job's
-- operation log by. Aligned with migrations/sqlite/0008.
--
-- A session is created when an operator logs in with an operator key; the browser holds a random
-- 256-bit token in a cookie, and only its SHA-256 is stored here (as operator keys are). Each
-- session has its own CSRF token, which every form of the console carries. Revoking the operator
-- (DELETE FROM operator_keys) deletes its sessions with it.
CREATE TABLE console_sessions (
    token_hash BYTEA PRIMARY KEY,
    operator   TEXT NOT NULL REFERENCES operator_keys (name) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
-- expired sessions are pruned by age
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
-- the steps of one job's operation log (the console's job page); operation ids are derived from
-- (job, stage, effect), so without it the log of one job is a scan of all of them
CREATE INDEX operations_by_job ON operations (tenant_id, job_id);

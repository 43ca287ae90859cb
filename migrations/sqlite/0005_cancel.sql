-- Aligned with migrations/postgres/0005: the 'cancelled' status and cancel_requested_at. SQLite
-- cannot alter a CHECK constraint, so the table is rebuilt with the same rows (seq included) and
-- its indexes recreated; kind and input lose the defaults 0004 had to give them.
CREATE TABLE jobs_new (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id              TEXT NOT NULL UNIQUE,
    tenant_id           TEXT NOT NULL REFERENCES tenants (tenant_id),
    kind                TEXT NOT NULL,
    job_key             TEXT,
    input               TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    stage               TEXT,
    progress            INTEGER NOT NULL CHECK (progress BETWEEN 0 AND 100),
    attempts            INTEGER NOT NULL CHECK (attempts >= 0),
    max_attempts        INTEGER NOT NULL CHECK (max_attempts >= 1),
    next_attempt_at     TEXT,
    output              TEXT,
    error_message       TEXT,
    error_class         TEXT CHECK (error_class IN ('retryable', 'invalid', 'alert')),
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    started_at          TEXT,
    finished_at         TEXT,
    lease_entry         TEXT,
    lease_delivery      INTEGER,
    cancel_requested_at TEXT
);
INSERT INTO jobs_new (seq, job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts,
    max_attempts, next_attempt_at, output, error_message, error_class, created_at, updated_at,
    started_at, finished_at, lease_entry, lease_delivery)
SELECT seq, job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts,
    max_attempts, next_attempt_at, output, error_message, error_class, created_at, updated_at,
    started_at, finished_at, lease_entry, lease_delivery
FROM jobs;
-- Keep the AUTOINCREMENT counter (it may be past MAX(seq): inserts refused by ON CONFLICT still
-- take a number), so no seq is ever issued twice.
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'jobs')
WHERE name = 'jobs_new' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'jobs');
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, seq);
CREATE INDEX jobs_by_tenant_status ON jobs (tenant_id, status, seq);
CREATE INDEX jobs_live ON jobs (seq) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_by_tenant_kind ON jobs (tenant_id, kind, seq);
CREATE INDEX jobs_by_tenant_created ON jobs (tenant_id, created_at);
CREATE INDEX jobs_by_tenant_error ON jobs (tenant_id, error_class, seq) WHERE error_class IS NOT NULL;

-- Aligned with migrations/postgres/0006: the 'scheduled' status, run_at and priority (the jobs
-- table is rebuilt, as SQLite cannot alter a CHECK constraint; rows and seq kept), operator keys,
-- pauses, limits and task leases.
CREATE TABLE jobs_new (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id              TEXT NOT NULL UNIQUE,
    tenant_id           TEXT NOT NULL REFERENCES tenants (tenant_id),
    kind                TEXT NOT NULL,
    job_key             TEXT,
    input               TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('scheduled', 'queued', 'running', 'completed', 'failed', 'cancelled')),
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
    cancel_requested_at TEXT,
    run_at              TEXT,
    priority            TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low'))
);
INSERT INTO jobs_new (seq, job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts,
    max_attempts, next_attempt_at, output, error_message, error_class, created_at, updated_at,
    started_at, finished_at, lease_entry, lease_delivery, cancel_requested_at)
SELECT seq, job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts,
    max_attempts, next_attempt_at, output, error_message, error_class, created_at, updated_at,
    started_at, finished_at, lease_entry, lease_delivery, cancel_requested_at
FROM jobs;
-- Keep the AUTOINCREMENT counter (it may be past MAX(seq): inserts refused by ON CONFLICT still
-- take a number), so no seq is ever issued twice.
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'jobs')
WHERE name = 'jobs_new' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'jobs');
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, seq);
CREATE INDEX jobs_by_tenant_status ON jobs (tenant_id, status, seq);
CREATE INDEX jobs_live ON jobs (seq) WHERE status IN ('scheduled', 'queued', 'running');
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_by_tenant_kind ON jobs (tenant_id, kind, seq);
CREATE INDEX jobs_by_tenant_created ON jobs (tenant_id, created_at);
CREATE INDEX jobs_by_tenant_error ON jobs (tenant_id, error_class, seq) WHERE error_class IS NOT NULL;
CREATE INDEX audit_by_time ON audit_log (at);
CREATE INDEX operations_by_time ON operations (updated_at);

-- Credentials of the operator API (/admin/v1). Never a tenant's: a tenant key is refused there.
CREATE TABLE operator_keys (
    name       TEXT PRIMARY KEY,
    -- SHA-256 of the key; the key itself is shown once and never stored.
    key_hash   BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

-- Paused queues and kinds: workers start nothing of them until resumed.
CREATE TABLE paused (
    scope     TEXT NOT NULL CHECK (scope IN ('queue', 'kind')),
    name      TEXT NOT NULL,
    paused_by TEXT NOT NULL,
    paused_at TEXT NOT NULL,
    PRIMARY KEY (scope, name)
);

-- Overrides of the configured defaults: a tenant's cap on jobs running at once and its starts per
-- second; a kind's starts per second.
CREATE TABLE limits (
    scope             TEXT NOT NULL CHECK (scope IN ('tenant', 'kind')),
    name              TEXT NOT NULL,
    max_running       INTEGER CHECK (max_running >= 1),
    starts_per_second REAL CHECK (starts_per_second > 0),
    updated_at        TEXT NOT NULL,
    PRIMARY KEY (scope, name),
    CHECK (scope = 'tenant' OR max_running IS NULL)
);

-- A background task runs only where its lease is held (and not expired).
CREATE TABLE task_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

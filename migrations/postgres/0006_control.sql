-- Control: scheduled jobs and priorities, operator keys, pauses, per-tenant and per-kind limits,
-- and the leases that keep one background task (the pruner) running across replicas. Aligned
-- with migrations/sqlite/0006.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('scheduled', 'queued', 'running', 'completed', 'failed', 'cancelled'));
-- when a scheduled job may start (NULL: at once)
ALTER TABLE jobs ADD COLUMN run_at TIMESTAMPTZ;
ALTER TABLE jobs ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal'
    CHECK (priority IN ('high', 'normal', 'low'));
DROP INDEX jobs_live;
CREATE INDEX jobs_live ON jobs (seq) WHERE status IN ('scheduled', 'queued', 'running');
-- the pruner deletes finished jobs oldest first, and audit rows by age
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX audit_by_time ON audit_log (at);
CREATE INDEX operations_by_time ON operations (updated_at);

-- Credentials of the operator API (/admin/v1). Never a tenant's: a tenant key is refused there.
CREATE TABLE operator_keys (
    name       TEXT PRIMARY KEY,
    -- SHA-256 of the key; the key itself is shown once and never stored.
    key_hash   BYTEA NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);

-- Paused queues and kinds: workers start nothing of them until resumed.
CREATE TABLE paused (
    scope     TEXT NOT NULL CHECK (scope IN ('queue', 'kind')),
    name      TEXT NOT NULL,
    paused_by TEXT NOT NULL,
    paused_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, name)
);

-- Overrides of the configured defaults: a tenant's cap on jobs running at once and its starts per
-- second; a kind's starts per second.
CREATE TABLE limits (
    scope             TEXT NOT NULL CHECK (scope IN ('tenant', 'kind')),
    name              TEXT NOT NULL,
    max_running       INTEGER CHECK (max_running >= 1),
    starts_per_second DOUBLE PRECISION CHECK (starts_per_second > 0),
    updated_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, name),
    CHECK (scope = 'tenant' OR max_running IS NULL)
);

-- A background task runs only where its lease is held (and not expired).
CREATE TABLE task_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

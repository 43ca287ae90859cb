-- longhaul application storage, SQLite. Numbering is aligned with migrations/postgres.
-- Timestamps are RFC 3339 text, JSON is text: what sqlx's chrono and Json types write.

CREATE TABLE tenants (
    tenant_id    TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    api_key_hash BLOB NOT NULL UNIQUE,
    webhook_url  TEXT,
    created_at   TEXT NOT NULL
);

CREATE TABLE tickets (
    tenant_id  TEXT NOT NULL REFERENCES tenants (tenant_id),
    ticket_id  TEXT NOT NULL,
    revision   INTEGER NOT NULL CHECK (revision >= 1),
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    triage     TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, ticket_id)
);

CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id          TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL REFERENCES tenants (tenant_id),
    ticket_id       TEXT NOT NULL,
    ticket_revision INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    stage           TEXT,
    progress        INTEGER NOT NULL CHECK (progress BETWEEN 0 AND 100),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    next_attempt_at TEXT,
    output          TEXT,
    error_message   TEXT,
    error_class     TEXT CHECK (error_class IN ('retryable', 'invalid', 'alert')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT
);
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, seq);
CREATE INDEX jobs_by_tenant_status ON jobs (tenant_id, status, seq);
CREATE INDEX jobs_live ON jobs (updated_at) WHERE status IN ('queued', 'running');

CREATE TABLE operations (
    operation_id TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    stage        TEXT NOT NULL,
    effect       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('started', 'done')),
    attempt      INTEGER NOT NULL,
    result       TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    job_id    TEXT,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    at        TEXT NOT NULL
);
CREATE INDEX audit_by_job ON audit_log (tenant_id, job_id, seq);

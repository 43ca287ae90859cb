-- longhaul application storage, PostgreSQL. Numbering is aligned with migrations/sqlite.

CREATE TABLE tenants (
    tenant_id    TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    -- SHA-256 of the API key; the key itself is shown once and never stored.
    api_key_hash BYTEA NOT NULL UNIQUE,
    webhook_url  TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE tickets (
    tenant_id  TEXT NOT NULL REFERENCES tenants (tenant_id),
    ticket_id  TEXT NOT NULL,
    revision   BIGINT NOT NULL CHECK (revision >= 1),
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    -- what the triage pipeline applied (category, priority, labels, summary), with its job id
    triage     JSONB,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, ticket_id)
);

CREATE TABLE jobs (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id          TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL REFERENCES tenants (tenant_id),
    ticket_id       TEXT NOT NULL,
    ticket_revision BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    stage           TEXT,
    progress        INTEGER NOT NULL CHECK (progress BETWEEN 0 AND 100),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    max_attempts    INTEGER NOT NULL CHECK (max_attempts >= 1),
    next_attempt_at TIMESTAMPTZ,
    output          JSONB,
    error_message   TEXT,
    error_class     TEXT CHECK (error_class IN ('retryable', 'invalid', 'alert')),
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ
);
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, seq);
CREATE INDEX jobs_by_tenant_status ON jobs (tenant_id, status, seq);
-- the reconciler scans live jobs only
CREATE INDEX jobs_live ON jobs (updated_at) WHERE status IN ('queued', 'running');

CREATE TABLE operations (
    operation_id TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    stage        TEXT NOT NULL,
    effect       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('started', 'done')),
    attempt      INTEGER NOT NULL,
    result       JSONB,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE audit_log (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    job_id    TEXT,
    action    TEXT NOT NULL,
    detail    JSONB NOT NULL,
    at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_by_job ON audit_log (tenant_id, job_id, seq);

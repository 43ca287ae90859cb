-- The triage kind's tickets, SQLite. Numbering is aligned with migrations/postgres; the history is
-- kept in _longhaul_triage_migrations, apart from the store's. Timestamps are RFC 3339 text, JSON
-- is text.
--
-- The schema exactly as the store's migration 0001 created it before tickets moved to the triage
-- crate: every database migrated by the store has the table already (0001 is history and still
-- creates it), so this is a no-op there and creates it anywhere else.
CREATE TABLE IF NOT EXISTS tickets (
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

-- Aligned with migrations/postgres/0004: job kinds. Every row recorded before is a triage job:
-- kind 'triage', input {"ticket_id", "revision"} (JSON text), and key '<ticket id>@<revision>',
-- what the triage kind derives. job_id and seq are unchanged.
--
-- SQLite adds a NOT NULL column only with a default and cannot drop a default without rebuilding
-- the table, so kind and input keep theirs; every insert names both columns.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'triage';
ALTER TABLE jobs ADD COLUMN job_key TEXT;
ALTER TABLE jobs ADD COLUMN input TEXT NOT NULL DEFAULT '{}';
UPDATE jobs
SET job_key = ticket_id || '@' || ticket_revision,
    input = json_object('ticket_id', ticket_id, 'revision', ticket_revision);
-- No index, constraint or key names either column (0001-0003), which DROP COLUMN requires.
ALTER TABLE jobs DROP COLUMN ticket_id;
ALTER TABLE jobs DROP COLUMN ticket_revision;

-- The filters of a tenant's job list, as on PostgreSQL.
CREATE INDEX jobs_by_tenant_kind ON jobs (tenant_id, kind, seq);
CREATE INDEX jobs_by_tenant_created ON jobs (tenant_id, created_at);
CREATE INDEX jobs_by_tenant_error ON jobs (tenant_id, error_class, seq) WHERE error_class IS NOT NULL;

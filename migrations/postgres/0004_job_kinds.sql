-- Job kinds: a job is of a kind, recorded with the key its id was derived from and its input as
-- JSON, instead of naming a ticket revision to triage. Every row recorded before is a triage job:
-- kind 'triage', input {"ticket_id", "revision"}, and key '<ticket id>@<revision>', what the triage
-- kind derives (a job submitted then with a client Idempotency-Key gets that key too: the client's
-- key was never stored). job_id and seq are unchanged, so ids, cursors and queue entries still
-- name the same jobs.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'triage';
ALTER TABLE jobs ALTER COLUMN kind DROP DEFAULT;
ALTER TABLE jobs ADD COLUMN job_key TEXT;
ALTER TABLE jobs ADD COLUMN input JSONB;
UPDATE jobs
SET job_key = ticket_id || '@' || ticket_revision,
    input = jsonb_build_object('ticket_id', ticket_id, 'revision', ticket_revision);
ALTER TABLE jobs ALTER COLUMN input SET NOT NULL;
-- No index names either column (0001-0003), so they go without one being rebuilt.
ALTER TABLE jobs DROP COLUMN ticket_id, DROP COLUMN ticket_revision;

-- The filters of a tenant's job list (newest first by seq): kind, error class, and a created-at
-- range; status has jobs_by_tenant_status (0001). kind and created_at never change, and only rows
-- that failed at least once enter the error-class index. None of them names stage, progress or
-- updated_at, so progress writes stay HOT (0002); status is in none of them.
CREATE INDEX jobs_by_tenant_kind ON jobs (tenant_id, kind, seq);
CREATE INDEX jobs_by_tenant_created ON jobs (tenant_id, created_at);
CREATE INDEX jobs_by_tenant_error ON jobs (tenant_id, error_class, seq) WHERE error_class IS NOT NULL;

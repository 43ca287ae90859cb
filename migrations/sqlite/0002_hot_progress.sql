-- Aligned with migrations/postgres/0002: the live-jobs index is keyed by seq, not updated_at.
-- (SQLite has no fillfactor; the index change keeps the two schemas alike.)
DROP INDEX jobs_live;
CREATE INDEX jobs_live ON jobs (seq) WHERE status IN ('queued', 'running');

-- Progress writes change stage, progress and updated_at only. With no index on those columns and
-- free room on the page, PostgreSQL updates the row in place (a HOT update: no new index entries),
-- which is most of the per-row cost of the hot path. So the reconciler's live-jobs index is keyed
-- by seq (the order it scans in) instead of updated_at, and pages keep 30 % free for new versions.
DROP INDEX jobs_live;
CREATE INDEX jobs_live ON jobs (seq) WHERE status IN ('queued', 'running');
ALTER TABLE jobs SET (fillfactor = 70);

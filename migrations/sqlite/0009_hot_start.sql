-- Aligned with migrations/postgres/0009: the column phase ('live' for scheduled, queued and
-- running, else the status), and the indexes that name it instead of status. SQLite has no HOT
-- update; the column is there because the statements both backends run filter by it
-- (sql/common/), and a virtual one costs no storage: it is computed when read. SQLite takes a
-- partial index only where the query repeats the index's own terms, so jobs_live is on
-- `phase = 'live'`, as those statements say. jobs_by_tenant_created goes, as on PostgreSQL (SQLite
-- never used it: it plans a statement before its parameters are bound, so an optional filter
-- constrains nothing). The operation log's index moves to created_at, which retention prunes it by.
DROP INDEX jobs_by_tenant_status;
DROP INDEX jobs_live;
DROP INDEX jobs_by_tenant_created;
ALTER TABLE jobs ADD COLUMN phase TEXT NOT NULL GENERATED ALWAYS AS (
    CASE WHEN status IN ('scheduled', 'queued', 'running') THEN 'live' ELSE status END
) VIRTUAL;
CREATE INDEX jobs_by_tenant_phase ON jobs (tenant_id, phase, seq);
CREATE INDEX jobs_live ON jobs (seq) WHERE phase = 'live';

DROP INDEX operations_by_time;
CREATE INDEX operations_by_time ON operations (created_at);

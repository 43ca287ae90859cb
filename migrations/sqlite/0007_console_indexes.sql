-- Aligned with migrations/postgres/0007 (see there why each index exists and what it costs): the
-- indexes of the operator's views across tenants, by failed or cancelled status, error class, kind,
-- key and creation time. The same names and columns; the key's is a btree, as SQLite has no hash
-- index (nor a limit on an entry's size). SQLite's planner uses none of them for the statements of
-- the operator's views today (EXPLAIN QUERY PLAN): it plans a statement before its parameters are
-- bound, so `($n IS NULL OR col = $n)` constrains nothing, and it takes a partial index only where
-- the query repeats the index's own terms. They keep the two schemas alike, as 0002 and 0004 do,
-- at the cost of an index entry per write on a backend meant for one node and modest volumes.
-- (SQLite has no INCLUDE: the columns PostgreSQL's carries are left out.)
CREATE INDEX IF NOT EXISTS jobs_failed_cancelled ON jobs (status, seq) WHERE status IN ('failed', 'cancelled');
CREATE INDEX IF NOT EXISTS jobs_by_error ON jobs (error_class, seq) WHERE error_class IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_kind ON jobs (kind, seq);
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (job_key);
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at);

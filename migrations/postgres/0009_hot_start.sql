-- A job's start and an operation's finish as HOT updates. Aligned with migrations/sqlite/0009.
--
-- PostgreSQL updates a row in place, adding no index entry (a HOT update), only when no column any
-- index of the table names (a key or INCLUDE column, a partial index's predicate, an expression)
-- changes value, and the row's page has room for the new version. status was in three indexes of
-- jobs (jobs_by_tenant_status, and the predicates of jobs_live and jobs_failed_cancelled), so every
-- status write added an entry to every index of jobs that admits the row. The indexes now name
-- `phase` instead, a stored column computed from status: 'live' for scheduled, queued and running,
-- the status itself for completed, failed and cancelled. A start (scheduled or queued to running)
-- and a cancel request of a running job leave it as it was, and change no other indexed column:
-- with room on the page (fillfactor 70, 0002) they are HOT, as progress writes are. A retry's wait
-- (running to queued) is HOT too when its error class is the one recorded already (error_class is
-- indexed). Entering a terminal status, or leaving one, writes index entries. No index of jobs
-- names status.
--
-- The statements that read through these indexes filter by phase (sql/common/jobs/,
-- sql/common/console/), and by status as well where the phase does not say it (a live status):
-- PostgreSQL takes a partial index only for a query whose conditions imply its predicate
-- (`phase = 'live'` for jobs_live), and knows nothing of how phase follows from status.
--
-- jobs_by_tenant_created (0004) goes: a tenant's window of creation time is read as the operator's
-- is, window first through jobs_by_created (0007) when many newer jobs follow it
-- (postgres/jobs/select_page_window.sql), else by walking the tenant's jobs down; so no insert and
-- no status write adds an entry to it.
--
-- Adding a stored column rewrites the table and rebuilds its indexes, holding every read and write
-- of jobs back meanwhile: 8 s for this migration on a million jobs on a two-CPU machine (the
-- indexes it replaces are dropped first, so they are not rebuilt twice).
DROP INDEX jobs_by_tenant_status;
DROP INDEX jobs_live;
DROP INDEX jobs_failed_cancelled;
DROP INDEX jobs_by_tenant_created;
ALTER TABLE jobs ADD COLUMN phase TEXT NOT NULL GENERATED ALWAYS AS (
    CASE WHEN status IN ('scheduled', 'queued', 'running') THEN 'live' ELSE status END
) STORED;
-- a tenant's jobs of one status (the tenant's list, a bulk retry of a tenant): those of its phase,
-- then status checked on each row read (live statuses only: a terminal phase is its status)
CREATE INDEX jobs_by_tenant_phase ON jobs (tenant_id, phase, seq);
-- the live jobs (the reconciler, the console's load per kind and per tenant, a live status in the
-- operator's list)
CREATE INDEX jobs_live ON jobs (seq) WHERE phase = 'live';
-- failed or cancelled jobs across tenants (the operator's list, the bulk retry and its dry run, an
-- index-only count): as in 0007, keyed by phase, which is the status for these
CREATE INDEX jobs_failed_cancelled ON jobs (phase, seq)
    INCLUDE (tenant_id, kind, error_class, created_at) WHERE phase IN ('failed', 'cancelled');

-- operations: an operation is inserted when its step begins and updated when it is done (or handed
-- to a later attempt), both writing updated_at, which operations_by_time (0006) was keyed by. It
-- is keyed by created_at now, which never changes, and retention prunes operations by their
-- creation time (common/retention/prune_operations.sql): a step's effect takes seconds, the
-- operation log is kept for days. Pages keep 30 % free for the new versions of their rows.
DROP INDEX operations_by_time;
CREATE INDEX operations_by_time ON operations (created_at);
ALTER TABLE operations SET (fillfactor = 70);

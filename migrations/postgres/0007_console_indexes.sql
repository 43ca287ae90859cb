-- Indexes for the operator's views across tenants: the admin job list (GET /admin/v1/jobs, the
-- console's jobs page and `producer jobs list`, all select_page_admin.sql: newest first by seq,
-- every filter optional, usually no tenant) and the bulk retry's failed jobs (select_failed.sql,
-- count_failed.sql). Without a tenant the (tenant_id, ...) indexes of 0001 and 0004 do not apply,
-- and a filter that few of a million jobs match walked the primary key down through all of them.
-- docs/QUERY_PLANS.md shows each plan on 1 000 000 jobs (scripts/query-plans.sh). A job's
-- operation log has its index in 0008. Aligned with migrations/sqlite/0007.
--
-- What they cost the hot path (0002, 0004). Progress writes change stage, progress and updated_at,
-- none of which is named here: they stay HOT. A status write is a non-HOT update already
-- (jobs_by_tenant_status and jobs_live name status) and adds an entry to every index of jobs: each
-- full index below adds one entry to every insert and status write, a partial one only for the rows
-- it admits. Filters that need no index have none: a live status (scheduled, queued, running) walks
-- jobs_live (0006), `completed` (most jobs) and a priority walk the primary key, which finds a page
-- of them within a few thousand rows.
--
-- Building them takes a lock that holds writes to jobs back (9 to 16 s for a million jobs on a busy
-- two-CPU machine; docs/QUERY_PLANS.md). IF NOT EXISTS lets the operator of a large table build
-- them beforehand without it, each with CREATE INDEX CONCURRENTLY and the definition below (check
-- that none is left INVALID): this migration then does nothing.

-- status failed or cancelled: what an operator looks for and what a bulk retry takes, a few percent
-- of the jobs. Partial: a job enters it when it fails or is cancelled (a write naming status,
-- non-HOT anyway) and leaves it when retried; completed and live jobs never do. Keyed (status, seq),
-- so each status is one range walked in seq order, down for the list, up for the bulk retry. It
-- carries the bulk retry's filters (none of which changes while a job stays failed), so a dry run
-- can count the failed jobs matching any of them from this index alone (an index-only scan: a few
-- hundred pages for 30 000 failed jobs).
CREATE INDEX IF NOT EXISTS jobs_failed_cancelled ON jobs (status, seq)
    INCLUDE (tenant_id, kind, error_class, created_at) WHERE status IN ('failed', 'cancelled');

-- error class: set by a failure (a failed job, or a queued one awaiting its retry), cleared by a
-- completion or a retry on request, so partial on IS NOT NULL, as jobs_by_tenant_error (0004).
-- error_class is in that index already: writing it was never HOT, no HOT is lost.
CREATE INDEX IF NOT EXISTS jobs_by_error ON jobs (error_class, seq) WHERE error_class IS NOT NULL;

-- kind: no index of its own. A kind with 1 % of a million jobs is found in under a millisecond by
-- walking the primary key down (docs/QUERY_PLANS.md); a full index would cost an entry on every
-- insert and status write of every job for the rare quiet kind.

-- key: an operator looks a job up by the key its tenant knows (an Idempotency-Key, a ticket, a
-- document). A hash index: equality is the only question, an entry is a 4-byte hash whatever the
-- key's length (a btree refuses entries past ~2.7 kB, and a kind may derive long keys), and a key
-- names one job per tenant and kind, or a few, which are sorted by seq once found.
-- job_key never changes. Full.
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs USING hash (job_key);

-- creation time, without a tenant ("what was submitted during the incident"): a window's jobs are
-- read from here and the newest kept. A window that ends in the past was otherwise reached only
-- after walking every job created since (for that case the store reads window first,
-- select_page_admin_window.sql). created_at never changes. Full.
CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at);

-- Where a window of creation time [$1, $2) lies in seq ($1 NULL: from the first job): the seq of
-- the first job created at or after $1, of the first created at or after $2, and the newest seq.
-- Store::list_jobs_admin reads a page of the window window first (select_page_admin_window.sql)
-- when it holds few jobs and many came after it: counted in seq, which rises with creation time
-- (had it not, the page's walk down by seq would not be long). Three probes of an index
-- (jobs_by_created, jobs_pkey), one row each. Run uncached, so a NULL $1 folds away.
SELECT (SELECT seq FROM jobs WHERE ($1::timestamptz IS NULL OR created_at >= $1) ORDER BY created_at LIMIT 1)
           AS window_start,
       (SELECT seq FROM jobs WHERE created_at >= $2 ORDER BY created_at LIMIT 1) AS window_end,
       (SELECT MAX(seq) FROM jobs) AS newest

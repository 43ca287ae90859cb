-- console.kind_load: per kind, the live jobs (scheduled, queued, running) — how many run, how
-- many wait, and since when the longest-waiting one waits at time $1: a queued job since it was
-- queued (updated_at: its submission, retry request, or the failure that scheduled its retry) or
-- since its retry fell due (next_attempt_at); a scheduled job since its run_at. A retry or a
-- schedule not yet due is not waiting. Reads the live jobs only: phase 'live' (migration 0009),
-- the partial index jobs_live.
SELECT kind,
       SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running,
       SUM(CASE WHEN status = 'running' THEN 0 ELSE 1 END) AS queued,
       MIN(CASE
           WHEN status = 'queued' AND COALESCE(next_attempt_at, updated_at) <= $1
               THEN COALESCE(next_attempt_at, updated_at)
           WHEN status = 'scheduled' AND COALESCE(run_at, created_at) <= $1
               THEN COALESCE(run_at, created_at)
       END) AS waiting_since
FROM jobs
WHERE phase = 'live'
GROUP BY kind
ORDER BY kind

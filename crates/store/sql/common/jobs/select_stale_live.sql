-- Live jobs (scheduled, queued or running) of every tenant not updated since $1, in creation order
-- after seq $2, at most $3. A scheduled job is checked only once its run_at is before $1 too: its
-- record does not change while it waits, and checking every one on every pass would cost a Redis
-- call per scheduled job per pass. One whose entry was lost is restored then (due: at once).
-- The live jobs are those of phase 'live' (migration 0009): a walk of the partial index jobs_live.
SELECT seq, job_id, tenant_id, kind, job_key, input, status, stage, progress, attempts, max_attempts,
       next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at,
       lease_entry, lease_delivery, cancel_requested_at, run_at, priority
FROM jobs
WHERE phase = 'live' AND updated_at < $1 AND seq > $2
  AND NOT (status = 'scheduled' AND run_at >= $1)
ORDER BY seq
LIMIT $3

-- Of the jobs $1 (a JSON array of ids), those running with a cancel requested.
SELECT job_id FROM jobs
WHERE job_id IN (SELECT value FROM json_each($1)) AND status = 'running' AND cancel_requested_at IS NOT NULL

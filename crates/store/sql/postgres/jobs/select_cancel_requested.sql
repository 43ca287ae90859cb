-- Of the jobs $1 (a JSON array of ids), those running with a cancel requested.
SELECT job_id FROM jobs
WHERE job_id IN (SELECT jsonb_array_elements_text($1)) AND status = 'running' AND cancel_requested_at IS NOT NULL

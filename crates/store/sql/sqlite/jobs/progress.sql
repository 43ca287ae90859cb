-- Records running attempt $3's stage $4 and progress $5. $1 job, $2 tenant, $6 time. Core rule:
-- JobRecord::progress.
UPDATE jobs
SET stage = $4, progress = $5, updated_at = $6
WHERE job_id = $1 AND tenant_id = $2 AND (status = 'running' AND attempts = $3)

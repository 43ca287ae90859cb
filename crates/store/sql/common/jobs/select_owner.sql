-- The tenant owning a job, whoever asks (integrity checks only). $1 job.
SELECT tenant_id FROM jobs WHERE job_id = $1

-- The attempts the record of operation $1's job has started ($2 tenant): none when the record is
-- gone. A finish by an attempt above them comes from an earlier life of the job id.
SELECT j.attempts FROM operations o JOIN jobs j ON j.job_id = o.job_id AND j.tenant_id = o.tenant_id
WHERE o.operation_id = $1 AND o.tenant_id = $2

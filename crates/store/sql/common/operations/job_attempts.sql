-- The attempts the record of the operation's job has started: $1 job, $2 tenant. An operation
-- started by a higher attempt was begun in an earlier life of the job id (a record pruned, then
-- the job resubmitted under the same id, counting attempts from 1 again).
SELECT attempts FROM jobs WHERE job_id = $1 AND tenant_id = $2

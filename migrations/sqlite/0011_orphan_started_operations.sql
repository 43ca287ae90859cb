-- Operations still `started` that an earlier life of their job id left: the job's record is gone,
-- or was created again (a resubmission under the same id, whose attempts count from 1 again) and
-- has not started as many attempts as the operation's owner. Retention now deletes a pruned job's
-- started operations with it (crates/store/src/retention.rs), and a begin takes over a step whose
-- owner is above its record's attempts (crates/store/src/ops.rs); this removes those left before.
DELETE FROM operations
WHERE state = 'started'
  AND NOT EXISTS (SELECT 1 FROM jobs j
                  WHERE j.tenant_id = operations.tenant_id AND j.job_id = operations.job_id
                    AND j.attempts >= operations.attempt);

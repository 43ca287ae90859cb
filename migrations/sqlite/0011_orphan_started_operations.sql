-- Operations still `started` whose job record is gone. Retention now deletes a pruned job's
-- started operations with it (crates/store/src/retention.rs): a started operation belongs to the
-- attempt that began it, and a resubmission under the same job id counts attempts from 1 again,
-- so the old life's owner must not outlive the record. This removes those pruned before.
DELETE FROM operations
WHERE state = 'started'
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.tenant_id = operations.tenant_id AND j.job_id = operations.job_id);

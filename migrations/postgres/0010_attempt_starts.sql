-- Each attempt's start kept in the record, by attempt number: attempt_starts[n] is when attempt n
-- started (attempts only grow, so each number is one attempt). A start writes it instead of a
-- 'started' audit row; a job's trail reads it as it reads 'enqueued' and 'completed' (see
-- crates/store/src/audit.rs). NULL until the job's first start after this migration; attempts
-- started before it keep their 'started' rows. Not indexed, so a start stays a HOT update.
ALTER TABLE jobs ADD COLUMN attempt_starts TIMESTAMPTZ[];

-- Cancellation: a new terminal status, and the time a cancel was requested while the job ran
-- (its worker then ends it as 'cancelled'). Aligned with migrations/sqlite/0005.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled'));
ALTER TABLE jobs ADD COLUMN cancel_requested_at TIMESTAMPTZ;

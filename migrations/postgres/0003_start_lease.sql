-- The queue delivery (stream entry id and its delivery count) that started a job's current
-- attempt. Starts are fenced by it: a stale copy of an entry never takes over an attempt that a
-- newer delivery started. Cleared when a retry is scheduled (the retry is a new entry).
ALTER TABLE jobs ADD COLUMN lease_entry TEXT;
ALTER TABLE jobs ADD COLUMN lease_delivery INTEGER;

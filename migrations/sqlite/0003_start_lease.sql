-- The queue delivery (stream entry id and its delivery count) that started a job's current
-- attempt. Starts are fenced by it: a stale copy of an entry never takes over an attempt that a
-- newer delivery started. Kept while a retry waits (it names the entry that ran the failed
-- attempt); NULL for attempts started before this column existed, which any delivery may take over.
ALTER TABLE jobs ADD COLUMN lease_entry TEXT;
ALTER TABLE jobs ADD COLUMN lease_delivery INTEGER;

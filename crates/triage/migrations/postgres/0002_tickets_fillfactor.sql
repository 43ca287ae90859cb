-- A ticket is inserted when it is submitted and written again soon after, when its triage is
-- applied (write_triage.sql), and at each new revision. No index names the columns those writes
-- change (only the primary key is there), so PostgreSQL updates the row in place, adding no index
-- entry (a HOT update), when the row's page has room for the new version: pages keep 20 % free
-- for it. Pages written before keep what they hold. Aligned with migrations/sqlite/0002.
ALTER TABLE tickets SET (fillfactor = 80);

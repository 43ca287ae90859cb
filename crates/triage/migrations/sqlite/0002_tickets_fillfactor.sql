-- Aligned with migrations/postgres/0002, which leaves room on PostgreSQL's pages for a ticket's
-- updates (fillfactor). SQLite has no fillfactor: nothing to do.
SELECT 1;

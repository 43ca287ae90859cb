-- Nothing on SQLite: PostgreSQL's 0010 keeps each attempt's start in the record (jobs.attempt_starts)
-- instead of a 'started' audit row; SQLite, which is not the throughput target, keeps the rows. The
-- file keeps the two backends' numbering aligned.
SELECT 1;

-- How many failed jobs match the filters of select_failed.sql ($3–$7 there, $1–$5 here): what a
-- bulk retry's dry run answers. The failed jobs are those of phase 'failed' (a terminal status is
-- its own phase, migration 0009), which jobs_failed_cancelled is keyed by and holds the filters'
-- columns of: counted from the index alone.
SELECT COUNT(*)
FROM jobs
WHERE phase = 'failed'
  AND ($1 IS NULL OR tenant_id = $1)
  AND ($2 IS NULL OR kind = $2)
  AND ($3 IS NULL OR error_class = $3)
  AND ($4 IS NULL OR created_at >= $4)
  AND ($5 IS NULL OR created_at < $5)

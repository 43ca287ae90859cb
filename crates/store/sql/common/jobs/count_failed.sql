-- How many failed jobs match the filters of select_failed.sql ($3–$7 there, $1–$5 here): what a
-- bulk retry's dry run answers.
SELECT COUNT(*)
FROM jobs
WHERE status = 'failed'
  AND ($1 IS NULL OR tenant_id = $1)
  AND ($2 IS NULL OR kind = $2)
  AND ($3 IS NULL OR error_class = $3)
  AND ($4 IS NULL OR created_at >= $4)
  AND ($5 IS NULL OR created_at < $5)

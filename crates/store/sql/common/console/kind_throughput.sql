-- console.kind_throughput: per kind, the jobs that finished (completed, failed or cancelled) in
-- each of the last five minutes: $1 … $6 are the minutes' bounds, oldest first ($6: now). A range
-- scan of index jobs_finished.
SELECT kind,
       SUM(CASE WHEN finished_at < $2 THEN 1 ELSE 0 END) AS m1,
       SUM(CASE WHEN finished_at >= $2 AND finished_at < $3 THEN 1 ELSE 0 END) AS m2,
       SUM(CASE WHEN finished_at >= $3 AND finished_at < $4 THEN 1 ELSE 0 END) AS m3,
       SUM(CASE WHEN finished_at >= $4 AND finished_at < $5 THEN 1 ELSE 0 END) AS m4,
       SUM(CASE WHEN finished_at >= $5 THEN 1 ELSE 0 END) AS m5
FROM jobs
WHERE finished_at IS NOT NULL AND finished_at >= $1 AND finished_at < $6
GROUP BY kind
ORDER BY kind

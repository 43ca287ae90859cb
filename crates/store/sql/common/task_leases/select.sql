-- The lease of task $1, if any (expired or not).
SELECT holder, expires_at FROM task_leases WHERE name = $1

-- Gives up the lease of task $1, if holder $2 holds it.
DELETE FROM task_leases WHERE name = $1 AND holder = $2

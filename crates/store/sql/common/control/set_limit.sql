-- Sets the limits of $1 scope ('tenant' | 'kind') $2 name to $3 max running, $4 starts per second
-- (each NULL: none), at $5: the whole limit, replacing what was set.
INSERT INTO limits (scope, name, max_running, starts_per_second, updated_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (scope, name) DO UPDATE
SET max_running = excluded.max_running, starts_per_second = excluded.starts_per_second,
    updated_at = excluded.updated_at
RETURNING scope, name, max_running, starts_per_second, updated_at

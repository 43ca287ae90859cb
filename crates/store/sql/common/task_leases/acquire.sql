-- Takes or extends the lease of task $1 for holder $2 until $4, at time $3: taken when nobody
-- holds it, when its lease expired, or when $2 holds it already (then extended). One statement:
-- of concurrent callers exactly one gets the row back (the upsert serialises on the primary key).
INSERT INTO task_leases (name, holder, expires_at) VALUES ($1, $2, $4)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE task_leases.holder = excluded.holder OR task_leases.expires_at <= $3
RETURNING holder

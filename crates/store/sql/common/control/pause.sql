-- Pauses $1 scope ('queue' | 'kind') $2 name, by $3 at $4; nothing when it is paused already.
INSERT INTO paused (scope, name, paused_by, paused_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (scope, name) DO NOTHING

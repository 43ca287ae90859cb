-- Everything paused, queues first, by name.
SELECT scope, name, paused_by, paused_at FROM paused ORDER BY scope DESC, name

-- Idempotent delayed enqueue (after trace.lua): the reconciler restoring a lost retry that is
-- not due yet.
-- KEYS: job key, jobs stream, delayed set.
-- ARGV: attempt, due ms, entry (JSON array of field/value pairs).
-- Returns 1 when the entry was scheduled, 0 when the job already has a live entry.
if live() then return 0 end
redis.call('SET', KEYS[1], ARGV[1] .. ':d')
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
return 1

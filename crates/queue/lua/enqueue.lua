-- Idempotent enqueue (after trace.lua).
-- KEYS: job key, jobs stream.
-- ARGV: attempt, then the entry's field/value pairs.
-- Returns the new entry id, or false when the job already has a live entry.
if live() then return false end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. id)
return id

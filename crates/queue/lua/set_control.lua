-- Replace the control mirror (limits and pauses) at once: readers see the old or the new one,
-- never a mix.
-- KEYS: control hash.
-- ARGV: field/value pairs.
-- Returns 1.
redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 1

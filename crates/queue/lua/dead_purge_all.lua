-- Purge every dead letter.
-- KEYS: dead stream.
-- Returns how many there were.
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n

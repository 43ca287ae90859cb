-- Dead-letter an undecodable entry still pending: ack it, copy it with the reason, delete it.
-- KEYS: jobs stream, dead stream.
-- ARGV: group, entry id, reason, dead maxlen, raw field/value pairs.
-- Returns 1, or 0 when the entry was no longer pending (a second run).
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'source_id', ARGV[2], 'reason', ARGV[3], unpack(ARGV, 5))
redis.call('XDEL', KEYS[1], ARGV[2])
return 1

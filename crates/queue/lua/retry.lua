-- Schedule a retry: ack and delete the entry, put the next entry in the delayed set, point the
-- job key at the next attempt, take the job out of its tenant's active set, append the 'retrying'
-- event - only if the entry is still pending (else a first run, or another worker, already did).
-- KEYS: jobs stream, delayed set, job key, events stream, the tenant's active set.
-- ARGV: group, entry id, due ms, next entry (JSON array of field/value pairs), next attempt,
--       events maxlen, job id, event field/value pairs.
-- Returns 1 when scheduled, 0 when the entry was no longer pending.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('SET', KEYS[3], ARGV[5] .. ':d')
redis.call('SREM', KEYS[5], ARGV[7])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', unpack(ARGV, 8))
return 1

-- Defer a delivery (after admission.lua): a worker was handed an entry it must not start now (its
-- kind or queue is paused). Ack and delete the entry, put the same entry back at the FRONT of its
-- flow's wait list (it keeps its place in its flow - priority, tenant and kind - so it holds back
-- no other kind; admission hands it out again as a new stream entry, so it burns no attempt and
-- its delivery count starts over), mark the job waiting ('<attempt>:w') if its key is gone or
-- names this entry, and take the job out of its tenant's active set unless its key names another
-- entry - only if the entry is still pending AND owned by `consumer`: a worker that stalled past
-- its lease, whose entry another worker reclaimed meanwhile (and may be running), defers nothing.
-- A defer racing a finish of the same entry loses or wins whole.
-- KEYS: jobs stream, job key.
-- ARGV: base, group, entry id, attempt, tenant, priority rank, job id, entry (JSON array of
--       field/value pairs), kind ('' for none), consumer.
-- Returns 1 when deferred, 0 when the entry was no longer pending, or pending with another
-- consumer.
local id = ARGV[3]
local p = redis.pcall('XPENDING', KEYS[1], ARGV[2], id, id, 1)
if type(p) ~= 'table' or p.err or not p[1] or p[1][2] ~= ARGV[10] then return 0 end
if redis.call('XACK', KEYS[1], ARGV[2], id) == 0 then return 0 end
redis.call('XDEL', KEYS[1], id)
park(ARGV[1], ARGV[6], ARGV[5], ARGV[9], ARGV[8], true)
local v = redis.call('GET', KEYS[2])
if not v or string.sub(v, -(#id + 1)) == ':' .. id then
  v = ARGV[4] .. ':w'
  redis.call('SET', KEYS[2], v)
end
local other = string.match(v, '^%d+:(.+)$')
if not other or other == 'w' or other == 'd' then
  redis.call('SREM', ARGV[1] .. ':active:' .. ARGV[5], ARGV[7])
end
return 1

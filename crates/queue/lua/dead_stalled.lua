-- Dead-letter a stalled entry (delivered too often without finishing): copy it into the dead
-- stream after its source id and the reason — its fields as the jobs stream holds them, or, when
-- it was deleted from the stream while pending, the fields passed in. The entry itself stays
-- pending: the caller finishes it.
-- KEYS: jobs stream, dead stream.
-- ARGV: group, entry id, reason, dead maxlen, the entry's field/value pairs as delivered.
-- Returns the dead letter's id; nil when the entry is no longer pending (finished already) or the
-- newest dead letter is its copy already (a second run).
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if not p[1] then return false end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] and last[1][2][1] == 'source_id' and last[1][2][2] == ARGV[2] then return false end
local fields = {}
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if e[1] then
  fields = e[1][2]
else
  for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'source_id', ARGV[2], 'reason', ARGV[3], unpack(fields))

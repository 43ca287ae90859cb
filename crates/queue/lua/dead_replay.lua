-- Replay a dead letter: add its raw fields (all but the leading source_id and reason) to the jobs
-- stream as a new entry, and delete the dead letter — atomically, so a concurrent purge or replay
-- of the same dead letter finds it either whole or gone. The new entry's id is remembered for a
-- while under the dead letter's id, so a second run (a client's retry after a lost reply) reports
-- the same success instead of a dead letter gone.
-- KEYS: dead stream, jobs stream, the dead letter's replay marker.
-- ARGV: dead letter id, how long to keep the marker (ms).
-- Returns the new entry's id (this run's or the first run's); 0 when the dead letter is gone
-- (and was not replayed lately); -1 when it holds no fields to put back (left in place).
local done = redis.call('GET', KEYS[3])
if done then return done end
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if not e[1] then return 0 end
local f = e[1][2]
local first = 1
if f[first] == 'source_id' then first = first + 2 end
if f[first] == 'reason' then first = first + 2 end
if #f < first + 1 then return -1 end
local id = redis.call('XADD', KEYS[2], '*', unpack(f, first))
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], id, 'PX', ARGV[2])
return id

-- Finish deliveries (completed, failed, stalled) in one step: for each entry still pending, ack
-- it, drop the job key if it still belongs to this attempt (when releasing) or names this very
-- entry (always: the entry is gone), and append its event (if any); delete every entry; then hand
-- the freed capacity new entries, so a busy worker needs one round trip per batch instead of two.
-- An entry no longer pending (a second run) gets no second event.
-- KEYS: jobs stream, events stream, one job key per delivery.
-- ARGV: group, events maxlen, count, consumer, entries to take, then per delivery: entry id,
--       attempt ('' to keep the job key), number of event arguments, event field/value pairs.
-- Returns {entries still pending that were acked, new entries or false}.
local n = tonumber(ARGV[3])
local ids = {}
local pos = 6
local acked = 0
for i = 1, n do
  local nf = tonumber(ARGV[pos + 2])
  ids[i] = ARGV[pos]
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[pos]) == 1 then
    acked = acked + 1
    local v = redis.call('GET', KEYS[2 + i])
    if v and ((ARGV[pos + 1] ~= '' and string.match(v, '^%d+') == ARGV[pos + 1])
        or string.sub(v, -(#ARGV[pos] + 1)) == ':' .. ARGV[pos]) then
      redis.call('DEL', KEYS[2 + i])
    end
    if nf > 0 then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, pos + 3, pos + 2 + nf))
    end
  end
  pos = pos + 3 + nf
end
if n > 0 then
  redis.call('XDEL', KEYS[1], unpack(ids))
end
local taken = false
if tonumber(ARGV[5]) > 0 then
  taken = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[4], 'COUNT', ARGV[5], 'STREAMS', KEYS[1], '>')
end
return {acked, taken}

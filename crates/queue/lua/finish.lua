-- Finish deliveries (completed, failed, stalled) in one step: for each entry still pending, ack
-- it, drop the job key if it still belongs to this attempt (when releasing) or names this very
-- entry (always: the entry is gone), take the job out of its tenant's active set unless its key
-- names another entry (which is then the job's live one), and append its event (if any); delete
-- every entry; then hand the freed capacity new entries, so a busy worker needs one round trip per
-- batch instead of two. An entry no longer pending (a second run) gets no second event and changes
-- no active set.
-- KEYS: jobs stream, events stream, one job key per delivery, then one active set per delivery
--       (its tenant's).
-- ARGV: group, events maxlen, count, consumer, entries to take, then per delivery: entry id,
--       job id, attempt ('' to keep the job key), number of event arguments, event field/value
--       pairs.
-- Returns {entries still pending that were acked, new entries or false}.
local n = tonumber(ARGV[3])
local ids = {}
local pos = 6
local acked = 0
for i = 1, n do
  local id = ARGV[pos]
  local nf = tonumber(ARGV[pos + 3])
  ids[i] = id
  if redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    acked = acked + 1
    local v = redis.call('GET', KEYS[2 + i])
    if v and ((ARGV[pos + 2] ~= '' and string.match(v, '^%d+') == ARGV[pos + 2])
        or string.sub(v, -(#id + 1)) == ':' .. id) then
      redis.call('DEL', KEYS[2 + i])
      v = false
    end
    local other = v and string.match(v, '^%d+:(.+)$')
    if not other or other == 'w' or other == 'd' then
      redis.call('SREM', KEYS[2 + n + i], ARGV[pos + 1])
    end
    if nf > 0 then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, pos + 4, pos + 3 + nf))
    end
  end
  pos = pos + 4 + nf
end
if n > 0 then
  redis.call('XDEL', KEYS[1], unpack(ids))
end
local taken = false
if tonumber(ARGV[5]) > 0 then
  taken = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[4], 'COUNT', ARGV[5], 'STREAMS', KEYS[1], '>')
end
return {acked, taken}

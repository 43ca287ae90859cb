-- Heartbeat: reset the idle time of the entries this consumer still owns, without bumping their
-- delivery counts.
-- KEYS: jobs stream.
-- ARGV: group, consumer, ids...
-- Returns {ids another consumer owns now, ids no longer pending at all}.
local taken, gone = {}, {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  elseif p[1] then
    taken[#taken + 1] = ARGV[i]
  else
    gone[#gone + 1] = ARGV[i]
  end
end
return {taken, gone}

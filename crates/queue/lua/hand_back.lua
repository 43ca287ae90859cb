-- Hand entries back: make entries this consumer still owns idle for the whole lease, so any
-- worker's next reclaim takes them at once (their delivery counts unchanged). For entries a
-- worker will not run: read while it was shutting down, or stranded (delivered in a reply that
-- was lost). Only entries idle at least 'min idle' ms are handed back, so one delivered again
-- meanwhile is kept.
-- KEYS: jobs stream.
-- ARGV: group, consumer, lease ms, min idle ms, ids...
-- Returns how many.
local n = 0
for i = 5, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] and p[1][3] >= tonumber(ARGV[4]) then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n

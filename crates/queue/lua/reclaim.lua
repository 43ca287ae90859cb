-- Reclaim entries idle longer than the lease, with their delivery counts.
-- KEYS: jobs stream.
-- ARGV: group, consumer, min idle ms, count, cursor.
-- Returns {next cursor, {{id, fields, deliveries}...}, {deleted ids}}.
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[5], 'COUNT', ARGV[4])
local out = {}
for i, e in ipairs(r[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
  local deliveries = 0
  if p[1] then deliveries = p[1][4] end
  out[i] = {e[1], e[2], deliveries}
end
return {r[1], out, r[3] or {}}

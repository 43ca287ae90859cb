-- Heal admission's state, a bounded step at a time:
-- 1. the active sets: drop members whose job is not in the stream any more - its key is gone,
--    marks it delayed or waiting, or names an entry the stream no longer holds (a finish that
--    never ran, lost with a worker) - so a lost finish cannot hold a tenant's cap for ever. Walks
--    the tenants index in name order and each tenant's set with SSCAN, about `count` members per
--    call, and remembers where it stopped ('tenant', 'cursor' in the heal hash); after the last
--    tenant the next call starts over. A tenant whose set is empty leaves the index. A key from
--    before entry ids were recorded (a bare attempt) counts as in the stream.
-- 2. the flows index: a flow whose wait list holds entries but is missing from its rank's ring
--    (lost to eviction or tampering: admission would never visit it) goes back at the ring's
--    tail; a flow whose list is empty leaves the index. Walks the index with SSCAN, about `count`
--    members per call, remembering its cursor ('flows' in the heal hash). Looking a flow up in its
--    ring costs the ring's length (LPOS).
-- KEYS: tenants index, heal hash, jobs stream, flows index.
-- ARGV: base, count.
-- Returns how many repairs it made: members dropped plus flows put back in their ring.
local base, count = ARGV[1], tonumber(ARGV[2])
local budget = count

local function after(tenant)
  local from = '-'
  if tenant then from = '(' .. tenant end
  return redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, 1)[1]
end

local function in_stream(job)
  local v = redis.call('GET', base .. ':job:' .. job)
  if not v then return false end
  local id = string.match(v, '^%d+:(.+)$')
  if id == nil then return true end
  if id == 'w' or id == 'd' then return false end
  return #redis.call('XRANGE', KEYS[3], id, id) > 0
end

local state = redis.call('HMGET', KEYS[2], 'tenant', 'cursor', 'flows')
local tenant, cursor = state[1], state[2] or '0'
if not tenant then tenant, cursor = after(nil), '0' end
local repaired = 0
while tenant and budget > 0 do
  local set = base .. ':active:' .. tenant
  local r = redis.call('SSCAN', set, cursor, 'COUNT', budget)
  cursor = r[1]
  budget = budget - math.max(1, #r[2])
  for _, job in ipairs(r[2]) do
    if not in_stream(job) then
      repaired = repaired + redis.call('SREM', set, job)
    end
  end
  if cursor == '0' then
    if redis.call('EXISTS', set) == 0 then redis.call('ZREM', KEYS[1], tenant) end
    tenant = after(tenant)
  end
end
if tenant then
  redis.call('HSET', KEYS[2], 'tenant', tenant, 'cursor', cursor)
else
  redis.call('HDEL', KEYS[2], 'tenant', 'cursor')
end

local r = redis.call('SSCAN', KEYS[4], state[3] or '0', 'COUNT', count)
for _, member in ipairs(r[2]) do
  local rank, flow = string.match(member, '^([012]):(.+)$')
  if not rank or redis.call('LLEN', base .. ':wait:' .. member) == 0 then
    redis.call('SREM', KEYS[4], member)
  else
    local ring = base .. ':ring:' .. rank
    if not redis.call('LPOS', ring, flow) then
      redis.call('RPUSH', ring, flow)
      repaired = repaired + 1
    end
  end
end
if r[1] == '0' then
  redis.call('HDEL', KEYS[2], 'flows')
else
  redis.call('HSET', KEYS[2], 'flows', r[1])
end
return repaired

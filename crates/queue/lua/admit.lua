-- Admission (after admission.lua): move up to `max` waiting entries into the jobs stream while
-- its backlog (entries not yet delivered) is under the window 'ahead' (0: no window). Each pick
-- prefers a priority by a weighted rotation (a counter, 'turn': of every 16 picks 12 prefer high,
-- 3 normal, 1 low) and falls through to the other priorities, highest first. Within a priority,
-- the ring of flows (tenant and kind) is served round robin: the flow at its head is taken off
-- and its oldest entries admitted if the flow allows it (cap, tenant and kind rates, kind pause;
-- see allows()) — up to `turn` of them (one when a rate applies; no more than its cap leaves
-- room for), one LPOP — and it goes back at the tail while its list holds entries. A blocked flow is
-- set aside for the rest of this call and goes back at the tail at its end (as if passed over
-- once), so each call visits each blocked flow once: at most `max` + the flows in the rings
-- visits per call, however many flows are blocked. A priority whose ring runs out is skipped for
-- the rest of the call. An admitted entry's job key is pointed at its stream entry if it still
-- marks this attempt waiting (or is gone); a flow whose list empties leaves its ring and the flows
-- index. Nothing is admitted while the queue is paused. When nothing waits at all (no ring, no
-- flow), stale counts are dropped. Atomic; a second run admits the next entries, which is what a
-- caller looping over it wants.
-- KEYS: jobs stream, control hash, waiting counts, turn counter, flows index.
-- ARGV: base, group, the token buckets' clock in ms ('': Redis's clock), max, entries per flow
--       per turn (at least 1).
-- Returns {admitted, entries still waiting, flows visited}.
local base, group, max = ARGV[1], ARGV[2], tonumber(ARGV[4])
local per_turn = math.max(1, tonumber(ARGV[5]) or 1)

local function still_waiting()
  local w = redis.call('HMGET', KEYS[3], '0', '1', '2')
  return math.max(0, num(w[1])) + math.max(0, num(w[2])) + math.max(0, num(w[3]))
end

local q = redis.call('HMGET', KEYS[2], 'ahead', 'paused')
if q[2] == '1' then return {0, still_waiting(), 0} end
local room = max
local ahead = num(q[1])
if ahead > 0 then room = math.min(room, ahead - backlog(base, group)) end
if room <= 0 then return {0, still_waiting(), 0} end
local now = clock(ARGV[3])

-- Settings per flow and tenants indexed for heal.lua, read once per call.
local memo, indexed = {}, {}

-- Tries flow `flow` ('<tenant>/<kind>') of priority `rank`, admitting at most `room_left`
-- entries: how many went into the stream (0 with 'blocked' when the flow may not start now, or
-- 'gone' when there is no such flow or its list is empty; members that are no entry go to the
-- dead stream), and whether its list still holds entries.
local function try_flow(rank, flow, room_left)
  local tenant, kind = split_flow(flow)
  if not tenant then return 0, 'gone', false end
  local list = base .. ':wait:' .. rank .. ':' .. flow
  local s = memo[flow]
  if not s then
    s = settings(base, tenant, kind)
    memo[flow] = s
  end
  local takes = allows(base, s, tenant, kind, now)
  if not takes then
    if redis.call('EXISTS', list) == 0 then
      redis.call('SREM', KEYS[5], rank .. ':' .. flow)
      return 0, 'gone', false
    end
    return 0, 'blocked', true
  end
  local n = math.min(per_turn, room_left)
  if #takes > 0 then n = 1 end
  if s.cap > 0 then n = math.min(n, s.cap - redis.call('SCARD', base .. ':active:' .. tenant)) end
  local members = redis.call('LPOP', list, math.max(1, n))
  if not members then
    redis.call('SREM', KEYS[5], rank .. ':' .. flow)
    return 0, 'gone', false
  end
  local count = 0
  for i, member in ipairs(members) do
    local e = entry_of(member)
    if not (e and e.job and e.attempt) then
      bury(base, member, 'a waiting member is not an entry with a job id and an attempt')
    else
      local take = {}
      if i == 1 then take = takes end
      local id = start(base, e.fields, e.job, tenant, take, indexed[tenant])
      indexed[tenant] = true
      local key = base .. ':job:' .. e.job
      local v = redis.call('GET', key)
      if not v or v == e.attempt .. ':w' then redis.call('SET', key, e.attempt .. ':' .. id) end
      count = count + 1
    end
  end
  redis.call('HINCRBY', KEYS[3], rank, -#members)
  if redis.call('LLEN', list) > 0 then return count, 'taken', true end
  redis.call('SREM', KEYS[5], rank .. ':' .. flow)
  return count, 'taken', false
end

local visits = 0
-- Flows found blocked in this call, per rank: in the order found, and as a set.
local passed = {['0'] = {}, ['1'] = {}, ['2'] = {}}
local set_aside = {['0'] = {}, ['1'] = {}, ['2'] = {}}
-- Admits a turn of entries of priority `rank`, at most `room_left`: how many (0 when its ring ran
-- out: every flow in it blocked, or none there).
local function try_rank(rank, room_left)
  local ring = base .. ':ring:' .. rank
  while true do
    local flow = redis.call('LPOP', ring)
    if not flow then return 0 end
    visits = visits + 1
    -- A flow set aside already is a second member of the same flow: it goes back once, below.
    if not set_aside[rank][flow] then
      local count, r, more = try_flow(rank, flow, room_left)
      if r == 'blocked' then
        set_aside[rank][flow] = true
        passed[rank][#passed[rank] + 1] = flow
      elseif more then
        redis.call('RPUSH', ring, flow)
      end
      if count > 0 then return count end
    end
  end
end

local SCHEDULE = {'0', '0', '0', '1', '0', '0', '0', '1', '0', '0', '0', '1', '0', '0', '0', '2'}
local ORDER = {['0'] = {'0', '1', '2'}, ['1'] = {'1', '0', '2'}, ['2'] = {'2', '0', '1'}}
local turn = num(redis.call('GET', KEYS[4]))
local spent = {}
local admitted = 0
while admitted < room do
  local picked = false
  for _, rank in ipairs(ORDER[SCHEDULE[turn % 16 + 1]]) do
    if not spent[rank] then
      local count = try_rank(rank, room - admitted)
      if count > 0 then
        picked = true
        admitted = admitted + count
        break
      end
      spent[rank] = true
    end
  end
  if not picked then break end
  turn = turn + 1
end
for _, rank in ipairs({'0', '1', '2'}) do
  local p = passed[rank]
  for i = 1, #p, 1000 do
    redis.call('RPUSH', base .. ':ring:' .. rank, unpack(p, i, math.min(i + 999, #p)))
  end
end
if admitted > 0 then redis.call('SET', KEYS[4], turn % 1048576) end
if admitted < room and redis.call('EXISTS', base .. ':ring:0', base .. ':ring:1', base .. ':ring:2', KEYS[5]) == 0 then
  redis.call('DEL', KEYS[3])
end
return {admitted, still_waiting(), visits}

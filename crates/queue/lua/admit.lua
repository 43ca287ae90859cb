-- Admission (after admission.lua): move up to `max` waiting entries into the jobs stream while
-- its backlog (entries not yet delivered) is under the window 'ahead' (0: no window). Each pick
-- prefers a priority by a weighted rotation (a counter, 'turn': of every 16 picks 12 prefer high,
-- 3 normal, 1 low) and falls through to the other priorities, highest first. Within a priority,
-- the ring of flows (tenant and kind) is served round robin: the flow at its head is taken off
-- and its oldest entry admitted if the flow allows it (cap, tenant and kind rates, kind pause;
-- see allows()), and it goes back at the tail while its list holds entries. A blocked flow is
-- set aside for the rest of this call and goes back at the tail at its end (as if passed over
-- once), so each call visits each blocked flow once: at most `max` + the flows in the rings
-- visits per call, however many flows are blocked. A priority whose ring runs out is skipped for
-- the rest of the call. An admitted entry's job key is pointed at its stream entry if it still
-- marks this attempt waiting (or is gone); a flow whose list empties leaves its ring and the flows
-- index. Nothing is admitted while the queue is paused. When nothing waits at all (no ring, no
-- flow), stale counts are dropped. Atomic; a second run admits the next entries, which is what a
-- caller looping over it wants.
-- KEYS: jobs stream, control hash, waiting counts, turn counter, flows index.
-- ARGV: base, group, the token buckets' clock in ms ('': Redis's clock), max.
-- Returns {admitted, entries still waiting, flows visited}.
local base, group, max = ARGV[1], ARGV[2], tonumber(ARGV[4])

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

-- Tries flow `flow` ('<tenant>/<kind>') of priority `rank`: 'admitted' (its oldest entry went
-- into the stream), 'buried' (its oldest member was no entry and went to the dead stream),
-- 'blocked', or 'gone' (no such flow, or its list is empty); and whether its list still holds
-- entries.
local function try_flow(rank, flow)
  local tenant, kind = split_flow(flow)
  if not tenant then return 'gone', false end
  local list = base .. ':wait:' .. rank .. ':' .. flow
  local member = redis.call('LINDEX', list, 0)
  if not member then
    redis.call('SREM', KEYS[5], rank .. ':' .. flow)
    return 'gone', false
  end
  local e = entry_of(member)
  local result = 'admitted'
  if not (e and e.job and e.attempt) then
    bury(base, member, 'a waiting member is not an entry with a job id and an attempt')
    result = 'buried'
  else
    local takes = allows(base, settings(base, tenant, kind), tenant, kind, now)
    if not takes then return 'blocked', true end
    local id = start(base, e.fields, e.job, tenant, takes)
    local key = base .. ':job:' .. e.job
    local v = redis.call('GET', key)
    if not v or v == e.attempt .. ':w' then redis.call('SET', key, e.attempt .. ':' .. id) end
  end
  redis.call('LPOP', list)
  redis.call('HINCRBY', KEYS[3], rank, -1)
  if redis.call('LLEN', list) > 0 then return result, true end
  redis.call('SREM', KEYS[5], rank .. ':' .. flow)
  return result, false
end

local visits = 0
-- Flows found blocked in this call, per rank: in the order found, and as a set.
local passed = {['0'] = {}, ['1'] = {}, ['2'] = {}}
local set_aside = {['0'] = {}, ['1'] = {}, ['2'] = {}}
-- Admits one entry of priority `rank`: true, or false when its ring ran out (every flow in it
-- blocked, or none there).
local function try_rank(rank)
  local ring = base .. ':ring:' .. rank
  while true do
    local flow = redis.call('LPOP', ring)
    if not flow then return false end
    visits = visits + 1
    -- A flow set aside already is a second member of the same flow: it goes back once, below.
    if not set_aside[rank][flow] then
      local r, more = try_flow(rank, flow)
      if r == 'blocked' then
        set_aside[rank][flow] = true
        passed[rank][#passed[rank] + 1] = flow
      elseif more then
        redis.call('RPUSH', ring, flow)
      end
      if r == 'admitted' then return true end
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
      if try_rank(rank) then
        picked = true
        break
      end
      spent[rank] = true
    end
  end
  if not picked then break end
  turn = turn + 1
  admitted = admitted + 1
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

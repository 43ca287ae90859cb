-- Shared prelude of admission, spliced in front of enqueue.lua, promote.lua, admit.lua and
-- defer.lua (behind trace.lua where live() is used). Every key is named from the queue's base
-- '<prefix>:{<queue>}' (one hash tag, so one Redis Cluster slot):
--   jobs (stream)                      the entries workers read;
--   wait:<rank>:<tenant>/<kind> (list) the entries of one flow (priority rank 0 high .. 2 low,
--                                      tenant, kind: '' for entries without one) waiting for
--                                      admission, oldest first, each its field/value list as JSON;
--                                      tenant ids and kind names never hold '/', so the name is
--                                      unambiguous;
--   ring:<rank> (list)                 each flow '<tenant>/<kind>' of that rank whose wait list is
--                                      not empty, once;
--   flows (set)                        every flow whose wait list is not empty, as
--                                      '<rank>:<tenant>/<kind>' (what heal.lua checks the rings
--                                      against);
--   waiting (hash)                     how many entries wait, per rank;
--   active:<tenant> (set)              the tenant's jobs admitted to the stream and not finished;
--   tenants (sorted set)               the tenants heal.lua walks;
--   control (hash)                     the limits and pauses: ahead, paused, cap, rate,
--                                      cap:<tenant>, rate:<tenant>, paused:<kind>, krate:<kind>;
--   tokens (hash)                      token buckets 't:<tenant>' and 'k:<kind>' ->
--                                      '<tokens>:<last refill ms>', on Redis's clock.

-- A control value as a number: absent or unreadable is 0 (no limit).
local function num(v)
  return tonumber(v) or 0
end

-- The token buckets' clock, ms: `given` when it is a number (tests), else Redis's own clock
-- (TIME), so no caller's clock - a producer's or a worker's, fast or slow - decides a refill.
local function clock(given)
  local n = tonumber(given)
  if n then return n end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The flow of `tenant` and `kind` ('' for none) as ring members name it, and back: tenant and
-- kind, or nil for a member that names no flow.
local function flow_of(tenant, kind)
  return tenant .. '/' .. kind
end
local function split_flow(flow)
  local tenant, kind = string.match(flow, '^([^/]+)/(.*)$')
  return tenant, kind
end

-- The settings that concern an entry of `tenant` and `kind` ('' for none): the queue's backlog
-- window ('ahead', 0: none) and pause; the tenant's cap and rate (its own when set, even 0, which
-- lifts the default; else the default; 0: none); the kind's pause and rate.
local function settings(base, tenant, kind)
  local v = redis.call('HMGET', base .. ':control', 'ahead', 'paused', 'cap', 'rate',
    'cap:' .. tenant, 'rate:' .. tenant, 'paused:' .. kind, 'krate:' .. kind)
  local cap, rate = v[5], v[6]
  if not cap then cap = v[3] end
  if not rate then rate = v[4] end
  local krate = 0
  if kind ~= '' then krate = num(v[8]) end
  return {ahead = num(v[1]), paused = v[2] == '1', cap = num(cap), rate = num(rate),
          kind_paused = kind ~= '' and v[7] == '1', krate = krate}
end

-- Entries in the jobs stream not yet delivered to `group`: the backlog 'ahead' bounds.
local function backlog(base, group)
  local stream = base .. ':jobs'
  local len = redis.call('XLEN', stream)
  if len == 0 then return 0 end
  local p = redis.pcall('XPENDING', stream, group)
  local pending = 0
  if type(p) == 'table' and not p.err then pending = tonumber(p[1]) or 0 end
  return math.max(0, len - pending)
end

-- Token bucket `field` at `rate` starts per second, holding at most max(1, rate) tokens, full
-- when new, refilled up to `now` (ms). A last refill after `now` (stamped by a clock that ran
-- ahead: an older version's caller, or another server's before a failover) is restamped at `now`
-- with the tokens it holds, so it refills nothing now and starves nobody later. Returns {field,
-- tokens, refill time} when it holds a whole token, else nil. Nothing else is stored.
local function bucket(base, field, rate, now)
  local size = math.max(1, rate)
  local tokens = size
  local s = redis.call('HGET', base .. ':tokens', field)
  if s then
    local t, l = string.match(s, '^([^:]+):(.+)$')
    t, l = tonumber(t), tonumber(l)
    if t and l then
      tokens = t
      if now > l then
        tokens = t + (now - l) * rate / 1000
      elseif l > now then
        redis.call('HSET', base .. ':tokens', field, string.format('%.6f:%.0f', t, now))
      end
    end
  end
  tokens = math.min(size, tokens)
  if tokens < 1 then return nil end
  return {field, tokens, now}
end

-- Whether an entry of `kind` of `tenant` may start now (s: its settings, the queue's pause
-- checked by the caller): its kind is not paused, the tenant is under its cap, and the tenant's
-- and the kind's buckets hold a token at `now` (ms; nil: Redis's clock, read only when a rate
-- applies). Returns the buckets to take a token from ({} when no rate applies), or nil.
local function allows(base, s, tenant, kind, now)
  if s.kind_paused then return nil end
  if s.cap > 0 and redis.call('SCARD', base .. ':active:' .. tenant) >= s.cap then return nil end
  if not now and (s.rate > 0 or s.krate > 0) then now = clock('') end
  local takes = {}
  if s.rate > 0 then
    local b = bucket(base, 't:' .. tenant, s.rate, now)
    if not b then return nil end
    takes[#takes + 1] = b
  end
  if s.krate > 0 then
    local b = bucket(base, 'k:' .. kind, s.krate, now)
    if not b then return nil end
    takes[#takes + 1] = b
  end
  return takes
end

-- Adds an entry (its field/value list) to the stream for a flow `allows` passed: takes a token
-- from each of `takes`, adds the job to its tenant's active set and the tenant to the index
-- heal.lua walks (unless `indexed`: the caller did in this script). Returns the entry id. The
-- caller points the job's presence key at it.
local function start(base, fields, job, tenant, takes, indexed)
  for _, b in ipairs(takes) do
    redis.call('HSET', base .. ':tokens', b[1], string.format('%.6f:%.0f', b[2] - 1, b[3]))
  end
  local id = redis.call('XADD', base .. ':jobs', '*', unpack(fields))
  redis.call('SADD', base .. ':active:' .. tenant, job)
  if not indexed then redis.call('ZADD', base .. ':tenants', 0, tenant) end
  return id
end

-- Puts an entry (`member`, its JSON) in the wait list of its flow (`rank`, `tenant`, `kind`), at
-- the back (at the front when `front`); when the list was empty, the flow joins its rank's ring
-- (at the tail) and the flows index.
local function park(base, rank, tenant, kind, member, front)
  local flow = flow_of(tenant, kind)
  local list = base .. ':wait:' .. rank .. ':' .. flow
  local n
  if front then n = redis.call('LPUSH', list, member) else n = redis.call('RPUSH', list, member) end
  if n == 1 then
    redis.call('RPUSH', base .. ':ring:' .. rank, flow)
    redis.call('SADD', base .. ':flows', rank .. ':' .. flow)
  end
  redis.call('HINCRBY', base .. ':waiting', rank, 1)
end

-- Whether an entry of `tenant` and `kind` may skip the wait lists: nothing waits at all (so it
-- overtakes nobody), the queue is not paused, the backlog is under the window, and its flow
-- allows it (token buckets at `now`, nil: Redis's clock). Returns the buckets to take a token
-- from, or nil.
local function fast(base, group, tenant, kind, now)
  local s = settings(base, tenant, kind)
  if s.paused then return nil end
  if redis.call('EXISTS', base .. ':ring:0', base .. ':ring:1', base .. ':ring:2', base .. ':flows') > 0 then
    return nil
  end
  if s.ahead > 0 and backlog(base, group) >= s.ahead then return nil end
  return allows(base, s, tenant, kind, now)
end

-- An entry as stored in a wait list or the delayed set (JSON of its field/value list), with the
-- fields admission reads: {fields, job, tenant (nil when it holds a '/', which no tenant id
-- does), attempt, kind ('' when none), rank ('1' when none or not a rank: the worker
-- dead-letters a bad one)}; nil when the member is no such list.
local function entry_of(member)
  local ok, fields = pcall(cjson.decode, member)
  if not ok or type(fields) ~= 'table' or #fields < 2 or #fields % 2 ~= 0 then return nil end
  local e = {fields = fields, kind = '', rank = '1'}
  for i = 1, #fields - 1, 2 do
    local k, v = fields[i], fields[i + 1]
    if type(k) ~= 'string' or type(v) ~= 'string' then return nil end
    if k == 'j' then e.job = v
    elseif k == 't' then
      if not string.find(v, '/', 1, true) then e.tenant = v end
    elseif k == 'a' then e.attempt = v
    elseif k == 'n' then e.kind = v
    elseif k == 'p' and (v == '0' or v == '1' or v == '2') then e.rank = v
    end
  end
  return e
end

-- Moves a member that is no entry into the dead stream, as it was.
local function bury(base, member, reason)
  redis.call('XADD', base .. ':dead', '*', 'source_id', '', 'reason', reason, 'member', member)
end

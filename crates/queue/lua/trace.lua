-- Shared prelude, spliced in front of enqueue.lua, enqueue_delayed.lua and has_trace.lua.
-- Defines live(): whether job key KEYS[1] is a live trace of its job in jobs stream KEYS[2].
-- The key holds '<attempt>:<entry id>' while the job has an entry in the stream,
-- '<attempt>:d' while it waits in the delayed set and '<attempt>:w' while it waits in a wait list
-- for admission; a key whose entry is gone from the stream (deleted while pending, or
-- dead-lettered) is no trace. A key from before entry ids were recorded (a bare attempt) counts
-- as live.
local function live()
  local v = redis.call('GET', KEYS[1])
  if not v then return false end
  local id = string.match(v, '^%d+:(.+)$')
  if id == nil or id == 'd' or id == 'w' then return true end
  return #redis.call('XRANGE', KEYS[2], id, id) > 0
end

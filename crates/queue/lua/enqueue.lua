-- Idempotent enqueue (after trace.lua and admission.lua): straight into the jobs stream when
-- nothing waits and the entry's flow may start now (fast(), token buckets on Redis's clock: an
-- idle queue behaves as a plain FIFO), else at the back of its flow's wait list for admit.lua.
-- KEYS: job key, jobs stream.
-- ARGV: attempt, base, group, priority rank, tenant, kind ('' for none), job id, then the entry's
--       field/value pairs.
-- Returns the new entry id, 'w' when the entry waits, or false when the job already has a live
-- entry (in the stream, pending, delayed or waiting).
if live() then return false end
local base, tenant, kind = ARGV[2], ARGV[5], ARGV[6]
local fields = {unpack(ARGV, 8)}
local takes = fast(base, ARGV[3], tenant, kind, nil)
if takes then
  local id = start(base, fields, ARGV[7], tenant, takes)
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. id)
  return id
end
park(base, ARGV[4], tenant, kind, cjson.encode(fields), false)
redis.call('SET', KEYS[1], ARGV[1] .. ':w')
return 'w'

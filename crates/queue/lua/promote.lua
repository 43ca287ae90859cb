-- Move due retries and schedules out of the delayed set (after admission.lua): each goes straight
-- into the jobs stream when nothing waits and its flow may start now (fast(), token buckets on
-- Redis's clock), else to the back of its flow's wait list, so it passes admission like a new
-- entry. The job's key ('<job key prefix><job id>', of this queue's hash tag, so not in KEYS) is
-- pointed at the new entry ('<attempt>:<entry id>') or marked waiting ('<attempt>:w') if it still
-- marks this attempt as delayed. A member that is not an entry goes to the dead stream; one
-- without a job, tenant or attempt goes into the stream as it is (the worker dead-letters it,
-- saying why).
-- KEYS: delayed set, jobs stream.
-- ARGV: now ms (what is due), limit, job key prefix, base, group.
-- Returns {moved count, score of the next due member or false}.
local base, group = ARGV[4], ARGV[5]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local e = entry_of(member)
  if not e then
    bury(base, member, 'a delayed member is not a JSON list of field/value pairs')
  elseif not (e.job and e.tenant and e.attempt) then
    redis.call('XADD', KEYS[2], '*', unpack(e.fields))
  else
    local key = ARGV[3] .. e.job
    local takes = fast(base, group, e.tenant, e.kind, nil)
    local mark
    if takes then
      mark = e.attempt .. ':' .. start(base, e.fields, e.job, e.tenant, takes)
    else
      park(base, e.rank, e.tenant, e.kind, member, false)
      mark = e.attempt .. ':w'
    end
    if redis.call('GET', key) == e.attempt .. ':d' then redis.call('SET', key, mark) end
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or false}

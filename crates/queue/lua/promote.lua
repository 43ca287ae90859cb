-- Move due retries into the jobs stream, pointing each job's key ('<job key prefix><job id>', of
-- this queue's hash tag, so not in KEYS) at its new entry if it still marks this attempt as
-- delayed.
-- KEYS: delayed set, jobs stream.
-- ARGV: now ms, limit, job key prefix.
-- Returns {promoted count, score of the next due member or false}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[1], member)
  local fields = cjson.decode(member)
  local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
  local job, attempt
  for i = 1, #fields - 1, 2 do
    if fields[i] == 'j' then job = fields[i + 1] elseif fields[i] == 'a' then attempt = fields[i + 1] end
  end
  if job and attempt then
    local key = ARGV[3] .. job
    if redis.call('GET', key) == attempt .. ':d' then redis.call('SET', key, attempt .. ':' .. id) end
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#due, nxt[2] or false}

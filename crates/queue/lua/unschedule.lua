-- Drop a scheduled job's waiting entry from the delayed set (its job was cancelled before its
-- run_at): the members scored exactly `due` that name the job, and then the job key while it
-- still marks that attempt delayed. A job already promoted is left alone: its delivery finds it
-- cancelled and drops it.
-- KEYS: delayed set, job key.
-- ARGV: due ms, job id, attempt.
-- Returns how many members were removed.
local removed = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])) do
  local ok, fields = pcall(cjson.decode, member)
  if ok and type(fields) == 'table' then
    for i = 1, #fields - 1, 2 do
      if fields[i] == 'j' and fields[i + 1] == ARGV[2] then
        redis.call('ZREM', KEYS[1], member)
        removed = removed + 1
        break
      end
    end
  end
end
if removed > 0 and redis.call('GET', KEYS[2]) == ARGV[3] .. ':d' then
  redis.call('DEL', KEYS[2])
end
return removed

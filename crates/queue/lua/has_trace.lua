-- Whether a job has a live trace (after trace.lua).
-- KEYS: job key, jobs stream.
-- Returns 1 or 0.
if live() then return 1 end
return 0

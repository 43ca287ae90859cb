-- Resumes $1 scope $2 name.
DELETE FROM paused WHERE scope = $1 AND name = $2

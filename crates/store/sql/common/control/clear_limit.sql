-- Clears the limits of $1 scope $2 name.
DELETE FROM limits WHERE scope = $1 AND name = $2

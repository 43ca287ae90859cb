-- Revokes operator $1's key.
DELETE FROM operator_keys WHERE name = $1

-- Replaces the result of operation $1 with $2 (the triage write was superseded).
UPDATE operations SET result = $2 WHERE operation_id = $1

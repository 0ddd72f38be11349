-- Executions without an idempotency key (most) are left out of the key's index: NULL keys
-- never conflict anyway. (Timeline entries and log lines are rowid tables here: their id is
-- the row itself, and their one index is already by execution.)
DROP INDEX executions_idempotency;
CREATE UNIQUE INDEX executions_idempotency ON executions (bot_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

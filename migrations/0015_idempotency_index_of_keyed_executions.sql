-- The idempotency index holds only the executions that have a key. Most have none, and each
-- of an execution's three writes (its insert, its claim, its result) added an entry for it
-- all the same: 3 of the 15 index entries of an execution's life. Every statement of this
-- version that relies on the index names its predicate (`ON CONFLICT (bot_id, idempotency_key)
-- WHERE idempotency_key IS NOT NULL`, since migration 0014's binaries), which a partial index
-- needs. The new index is built first (writes of executions wait while it is built); the old
-- one is dropped at the end.
CREATE UNIQUE INDEX executions_idempotency_keyed ON executions (bot_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX executions_idempotency;
ALTER INDEX executions_idempotency_keyed RENAME TO executions_idempotency;

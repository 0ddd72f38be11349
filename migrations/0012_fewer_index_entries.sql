-- Fewer index entries per execution: every state change of an execution writes a new entry
-- into each index its row matches, so indexes that say nothing new cost on every change.
-- Executions without an idempotency key (most) are left out of the key's index: NULL keys
-- never conflict anyway. A timeline entry and a log line are found by execution, so their
-- primary key is (execution_id, id) and the second index on the same columns goes.
-- On a large table this rebuilds three indexes while holding writes; plan the upgrade for a
-- quiet moment.
DROP INDEX executions_idempotency;
CREATE UNIQUE INDEX executions_idempotency ON executions (bot_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

ALTER TABLE execution_events DROP CONSTRAINT execution_events_pkey;
ALTER TABLE execution_events ADD PRIMARY KEY (execution_id, id);
DROP INDEX execution_events_execution;

ALTER TABLE execution_logs DROP CONSTRAINT execution_logs_pkey;
ALTER TABLE execution_logs ADD PRIMARY KEY (execution_id, id);
DROP INDEX execution_logs_execution;

-- One index instead of two for timeline entries and log lines: they are only ever found by
-- execution, so their primary key is (execution_id, id) and the separate index on the same
-- columns goes — one index entry less per entry and per line (three per execution).
-- This rebuilds both primary keys; on large tables, reads and writes of timelines and logs
-- wait until it is done (executions themselves are not held).
ALTER TABLE execution_events DROP CONSTRAINT execution_events_pkey;
ALTER TABLE execution_events ADD PRIMARY KEY (execution_id, id);
DROP INDEX execution_events_execution;

ALTER TABLE execution_logs DROP CONSTRAINT execution_logs_pkey;
ALTER TABLE execution_logs ADD PRIMARY KEY (execution_id, id);
DROP INDEX execution_logs_execution;

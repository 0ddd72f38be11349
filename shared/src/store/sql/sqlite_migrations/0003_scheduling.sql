-- Mirror of migrations/0003_scheduling.sql.
ALTER TABLE executions ADD COLUMN scheduled_for INTEGER;
ALTER TABLE executions ADD COLUMN replay_of BLOB;
ALTER TABLE executions ADD COLUMN max_concurrency INTEGER;
CREATE INDEX executions_scheduled ON executions (bot_id, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX executions_bot_running ON executions (bot_id) WHERE status = 'running';

CREATE TABLE execution_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id BLOB NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    message      TEXT NOT NULL
);
CREATE INDEX execution_events_execution ON execution_events (execution_id, id);

CREATE TABLE leader_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

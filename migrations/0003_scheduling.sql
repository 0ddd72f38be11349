-- Scheduling and delivery guarantees: cron fire times, replays, per-bot concurrency limits,
-- the per-execution timeline, and the scheduler's leader lease.
ALTER TABLE executions ADD COLUMN scheduled_for TIMESTAMPTZ;
ALTER TABLE executions ADD COLUMN replay_of UUID;
ALTER TABLE executions ADD COLUMN max_concurrency INTEGER;
CREATE INDEX executions_scheduled ON executions (bot_id, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX executions_bot_running ON executions (bot_id) WHERE status = 'running';

CREATE TABLE execution_events (
    id           BIGSERIAL PRIMARY KEY,
    execution_id UUID NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    at           TIMESTAMPTZ NOT NULL,
    kind         TEXT NOT NULL,
    message      TEXT NOT NULL
);
CREATE INDEX execution_events_execution ON execution_events (execution_id, id);

CREATE TABLE leader_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

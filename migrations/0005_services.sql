-- Service bots: what the user wants (desired) and where the service is (state), reported by
-- the worker that runs it. The service itself is an execution that stays running.
CREATE TABLE services (
    bot_id         UUID PRIMARY KEY REFERENCES bots(id),
    desired        TEXT NOT NULL,
    state          TEXT NOT NULL,
    execution_id   UUID,
    worker_id      TEXT,
    restarts       INTEGER NOT NULL DEFAULT 0,
    last_exit_code INTEGER,
    last_reason    TEXT,
    log_tail       JSONB,
    started_at     TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX executions_bot_live ON executions (bot_id) WHERE status IN ('queued', 'running');

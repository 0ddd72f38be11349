-- Mirror of migrations/0005_services.sql.
CREATE TABLE services (
    bot_id         BLOB PRIMARY KEY REFERENCES bots(id),
    desired        TEXT NOT NULL,
    state          TEXT NOT NULL,
    execution_id   BLOB,
    worker_id      TEXT,
    restarts       INTEGER NOT NULL DEFAULT 0,
    last_exit_code INTEGER,
    last_reason    TEXT,
    log_tail       TEXT,
    started_at     INTEGER,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX executions_bot_live ON executions (bot_id) WHERE status IN ('queued', 'running');

-- codex32 SQLite schema, version 1: the embedded mirror of migrations/0001_init.sql (PostgreSQL).
-- Times are INTEGER milliseconds since the epoch; BLOBs are 16-byte BLOBs; JSON is TEXT.

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           BLOB PRIMARY KEY,
    user_id      BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE bots (
    id         BLOB PRIMARY KEY,
    owner_id   BLOB NOT NULL REFERENCES users(id),
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    status     TEXT NOT NULL,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE UNIQUE INDEX bots_live_name ON bots (name) WHERE deleted_at IS NULL;
CREATE INDEX bots_owner ON bots (owner_id);

CREATE TABLE bot_versions (
    bot_id     BLOB NOT NULL REFERENCES bots(id),
    version    INTEGER NOT NULL,
    spec       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (bot_id, version)
);

CREATE TABLE executions (
    id               BLOB PRIMARY KEY,
    bot_id           BLOB NOT NULL REFERENCES bots(id),
    bot_version      INTEGER NOT NULL,
    owner_id         BLOB NOT NULL,
    pool             TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    exit_code        INTEGER,
    worker_id        TEXT,
    idempotency_key  TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER,
    lease_expires_at INTEGER,
    queued_at        INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    duration_ms      INTEGER,
    created_by       BLOB
);
CREATE UNIQUE INDEX executions_idempotency ON executions (bot_id, idempotency_key);
CREATE INDEX executions_bot ON executions (bot_id, id DESC);
CREATE INDEX executions_owner ON executions (owner_id, id DESC);
CREATE INDEX executions_status ON executions (status, id);
CREATE INDEX executions_leases ON executions (lease_expires_at) WHERE status = 'running';

CREATE TABLE execution_logs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id BLOB NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    stream       TEXT NOT NULL,
    line         TEXT NOT NULL,
    at           INTEGER NOT NULL
);
CREATE INDEX execution_logs_execution ON execution_logs (execution_id, id);

CREATE TABLE audit_log (
    id       BLOB PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor_id BLOB,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    details  TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    version      TEXT NOT NULL,
    pools        TEXT NOT NULL,
    slots        INTEGER NOT NULL,
    running      INTEGER NOT NULL,
    state        TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);

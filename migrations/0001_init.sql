-- codex32 PostgreSQL schema, version 1.
-- The SQLite schema (shared/src/store/sql/sqlite_migrations) mirrors this one; keep them in step.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE bots (
    id         UUID PRIMARY KEY,
    owner_id   UUID NOT NULL REFERENCES users(id),
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    status     TEXT NOT NULL,
    spec       JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    deleted_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX bots_live_name ON bots (name) WHERE deleted_at IS NULL;
CREATE INDEX bots_owner ON bots (owner_id);

CREATE TABLE bot_versions (
    bot_id     UUID NOT NULL REFERENCES bots(id),
    version    INTEGER NOT NULL,
    spec       JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (bot_id, version)
);

CREATE TABLE executions (
    id               UUID PRIMARY KEY,
    bot_id           UUID NOT NULL REFERENCES bots(id),
    bot_version      INTEGER NOT NULL,
    owner_id         UUID NOT NULL,
    pool             TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    input            JSONB NOT NULL,
    output           JSONB,
    error            TEXT,
    exit_code        INTEGER,
    worker_id        TEXT,
    idempotency_key  TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    run_at           TIMESTAMPTZ,
    lease_expires_at TIMESTAMPTZ,
    queued_at        TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    duration_ms      BIGINT,
    created_by       UUID
);
CREATE UNIQUE INDEX executions_idempotency ON executions (bot_id, idempotency_key);
CREATE INDEX executions_bot ON executions (bot_id, id DESC);
CREATE INDEX executions_owner ON executions (owner_id, id DESC);
CREATE INDEX executions_status ON executions (status, id);
CREATE INDEX executions_leases ON executions (lease_expires_at) WHERE status = 'running';

CREATE TABLE execution_logs (
    id           BIGSERIAL PRIMARY KEY,
    execution_id UUID NOT NULL REFERENCES executions(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    stream       TEXT NOT NULL,
    line         TEXT NOT NULL,
    at           TIMESTAMPTZ NOT NULL
);
CREATE INDEX execution_logs_execution ON execution_logs (execution_id, id);

CREATE TABLE audit_log (
    id       UUID PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL,
    actor_id UUID,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    details  JSONB NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    version      TEXT NOT NULL,
    pools        JSONB NOT NULL,
    slots        INTEGER NOT NULL,
    running      INTEGER NOT NULL,
    state        TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL
);

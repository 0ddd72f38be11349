-- Pool settings: a concurrency limit across every worker of a pool.
CREATE TABLE pools (
    name            TEXT PRIMARY KEY,
    max_concurrency INTEGER,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX executions_pool_running ON executions (pool) WHERE status = 'running';

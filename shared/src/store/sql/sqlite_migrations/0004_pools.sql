-- Mirror of migrations/0004_pools.sql.
CREATE TABLE pools (
    name            TEXT PRIMARY KEY,
    max_concurrency INTEGER,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX executions_pool_running ON executions (pool) WHERE status = 'running';

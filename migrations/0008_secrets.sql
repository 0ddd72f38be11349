-- Secrets of a bot (scope `bot:<id>`) or of a user for all their bots (`user:<id>`), sealed
-- with AES-256-GCM under the configured master key; values are never stored in the clear.
CREATE TABLE secrets (
    id         UUID PRIMARY KEY,
    scope      TEXT NOT NULL,
    name       TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (scope, name)
);

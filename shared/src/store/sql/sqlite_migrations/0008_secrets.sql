-- Mirror of migrations/0008_secrets.sql.
CREATE TABLE secrets (
    id         BLOB PRIMARY KEY,
    scope      TEXT NOT NULL,
    name       TEXT NOT NULL,
    sealed     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (scope, name)
);

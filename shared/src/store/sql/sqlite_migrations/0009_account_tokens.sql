-- Mirror of migrations/0009_account_tokens.sql.
CREATE TABLE account_tokens (
    id         BLOB PRIMARY KEY,
    kind       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    email      TEXT,
    role       TEXT,
    user_id    BLOB,
    created_by BLOB,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);

-- Mirror of migrations/0007_webhooks.sql.
CREATE TABLE webhooks (
    id           BLOB PRIMARY KEY,
    bot_id       BLOB NOT NULL REFERENCES bots(id),
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    hmac_secret  TEXT,
    created_by   BLOB,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX webhooks_bot ON webhooks (bot_id);

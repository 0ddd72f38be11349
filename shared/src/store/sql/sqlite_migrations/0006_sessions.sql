-- Mirror of migrations/0006_sessions.sql.
CREATE TABLE refresh_tokens (
    id         BLOB PRIMARY KEY,
    family_id  BLOB NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users(id),
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

-- Single-use, expiring tokens for accounts: invites (register with a role) and password
-- resets. Only a hash of each token is kept.
CREATE TABLE account_tokens (
    id         UUID PRIMARY KEY,
    kind       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    email      TEXT,
    role       TEXT,
    user_id    UUID,
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);

-- Webhook triggers: a URL per hook whose secret token (stored hashed) starts an execution of
-- its bot with the request body as input; optionally also checked by an HMAC signature.
CREATE TABLE webhooks (
    id           UUID PRIMARY KEY,
    bot_id       UUID NOT NULL REFERENCES bots(id),
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    hmac_secret  TEXT,
    created_by   UUID,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX webhooks_bot ON webhooks (bot_id);

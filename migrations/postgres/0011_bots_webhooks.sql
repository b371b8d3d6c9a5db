-- Bots, their scoped tokens, and webhooks (issue 16); the same schema as
-- migrations/sqlite/0011_bots_webhooks.sql. Times are Unix milliseconds.

-- A bot is a user row owned by the person who made it. It has no password
-- anyone knows (a random one, hashed) and signs in only with its tokens.
-- Deleting a bot disables it (`disabled_at`): its messages keep their sender.
ALTER TABLE users ADD COLUMN bot_owner BIGINT REFERENCES users(id);
CREATE INDEX users_by_bot_owner ON users(bot_owner) WHERE bot_owner IS NOT NULL;

-- A bot's long-lived token: only a SHA-256 of it is kept. `scopes` is
-- 'read', 'send' or 'read,send'; `rooms` a JSON array of room ids the token
-- is limited to, or NULL for every room of the bot.
CREATE TABLE bot_tokens (
    token_hash BYTEA PRIMARY KEY,
    public_id  TEXT NOT NULL UNIQUE,
    bot_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scopes     TEXT NOT NULL,
    rooms      TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX bot_tokens_by_bot ON bot_tokens(bot_id, created_at);

-- An incoming webhook: whoever holds its secret URL posts into its room, as
-- its own bot user (`bot_id`). Only a SHA-256 of the secret is kept.
CREATE TABLE incoming_webhooks (
    secret_hash BYTEA PRIMARY KEY,
    public_id   TEXT NOT NULL UNIQUE,
    room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    created_by  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    bot_id      BIGINT NOT NULL REFERENCES users(id),
    created_at  BIGINT NOT NULL
);
CREATE INDEX incoming_webhooks_by_room ON incoming_webhooks(room_id, created_at);
CREATE INDEX incoming_webhooks_by_creator ON incoming_webhooks(created_by);

-- An outgoing webhook: events of its owner's rooms POSTed to `url`, signed
-- with `secret` (HMAC-SHA256). The secret itself is kept: signing needs it.
-- `events` is 'message', 'mention' or 'message,mention'; `rooms` as for tokens.
CREATE TABLE outgoing_webhooks (
    public_id  TEXT PRIMARY KEY,
    owner_id   BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    url        TEXT NOT NULL,
    secret     TEXT NOT NULL,
    events     TEXT NOT NULL,
    rooms      TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX outgoing_webhooks_by_owner ON outgoing_webhooks(owner_id, created_at);

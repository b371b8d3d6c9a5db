-- Notifications away from the app (issue 15); the same schema as
-- migrations/sqlite/0006_notifications.sql. Times are Unix milliseconds.

-- What the member chose for this chat; NULL: the default of the room's kind
-- (`all` in a direct room, `mentions` in a group), which the server decides.
ALTER TABLE room_members ADD COLUMN notify TEXT CHECK (notify IN ('all', 'mentions', 'none'));

-- A browser's push subscription (RFC 8030): where the server POSTs, and the
-- keys it encrypts for (RFC 8291), both as base64url text. One row per
-- endpoint. It lives as long as the session that made it: a logout (or any
-- other end of that session) stops the pushes to that browser, so a shared
-- computer does not go on showing someone's messages.
CREATE TABLE push_subscriptions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_hash BYTEA NOT NULL REFERENCES sessions(token_hash) ON DELETE CASCADE,
    endpoint     TEXT NOT NULL UNIQUE,
    p256dh       TEXT NOT NULL,
    auth         TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
-- A user's list, and the oldest past their budget.
CREATE INDEX push_subscriptions_by_user ON push_subscriptions(user_id, created_at);
-- A session's end deletes its subscriptions.
CREATE INDEX push_subscriptions_by_session ON push_subscriptions(session_hash);

-- Natter's first schema. Times are Unix milliseconds.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,   -- case-folded before it gets here
    email         TEXT NOT NULL UNIQUE,   -- lower-cased before it gets here
    password_hash TEXT NOT NULL,          -- Argon2id PHC string
    created_at    INTEGER NOT NULL
);

-- Server-side sessions for both the cookie and bearer tokens, so either can be
-- revoked. Only a SHA-256 of the token is kept.
CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE rooms (
    id            TEXT PRIMARY KEY,       -- 128 random bits, base64url
    kind          TEXT NOT NULL CHECK (kind IN ('direct')),
    -- "smaller_id:larger_id" for direct rooms: one room per pair, whoever adds whom.
    direct_key    TEXT UNIQUE,
    -- The last seq handed out; bumped in the transaction that stores a message.
    last_seq      INTEGER NOT NULL DEFAULT 0,
    last_activity INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE room_members (
    room_id       TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    joined_at     INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX room_members_by_user ON room_members(user_id, room_id);

-- One row per message: concurrent sends never rewrite each other.
CREATE TABLE messages (
    id         INTEGER PRIMARY KEY,
    room_id    TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    sender_id  INTEGER NOT NULL REFERENCES users(id),
    body       TEXT NOT NULL,
    client_id  TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (room_id, seq)
);
-- Idempotent resends: one message per (room, sender, client_id).
CREATE UNIQUE INDEX messages_by_client_id
    ON messages(room_id, sender_id, client_id) WHERE client_id IS NOT NULL;

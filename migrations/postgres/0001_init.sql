-- Natter's first schema, PostgreSQL flavour: the same tables, keys and
-- uniqueness rules as migrations/sqlite/0001_init.sql. Times are Unix milliseconds.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,   -- case-folded before it gets here
    email         TEXT NOT NULL UNIQUE,   -- lower-cased before it gets here
    password_hash TEXT NOT NULL,          -- Argon2id PHC string
    created_at    BIGINT NOT NULL
);

-- Server-side sessions for both the cookie and bearer tokens, so either can be
-- revoked. Only a SHA-256 of the token is kept.
CREATE TABLE sessions (
    token_hash BYTEA PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE rooms (
    -- 128 random bits, base64url. Room ids collate bytewise ("C"), as in SQLite,
    -- whatever the database's default collation: ties in the chat list order alike.
    id            TEXT COLLATE "C" PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('direct')),
    -- "smaller_id:larger_id" for direct rooms: one room per pair, whoever adds whom.
    direct_key    TEXT UNIQUE,
    -- The last seq handed out; bumped (under this row's lock) in the
    -- transaction that stores a message.
    last_seq      BIGINT NOT NULL DEFAULT 0,
    last_activity BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE room_members (
    room_id       TEXT COLLATE "C" NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    last_read_seq BIGINT NOT NULL DEFAULT 0,
    joined_at     BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_by_user ON room_members(user_id, room_id);

-- One row per message: concurrent sends never rewrite each other.
CREATE TABLE messages (
    id         BIGSERIAL PRIMARY KEY,
    room_id    TEXT COLLATE "C" NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    sender_id  BIGINT NOT NULL REFERENCES users(id),
    body       TEXT NOT NULL,
    client_id  TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (room_id, seq)
);
-- Idempotent resends: one message per (room, sender, client_id).
CREATE UNIQUE INDEX messages_by_client_id
    ON messages(room_id, sender_id, client_id) WHERE client_id IS NOT NULL;

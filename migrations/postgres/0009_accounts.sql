-- Accounts, consent and administration (issue 16); the same schema as
-- migrations/sqlite/0009_accounts.sql (whose comments explain it), but for
-- the settings table, which PostgreSQL has had since 0002.

ALTER TABLE users ADD COLUMN display_name TEXT;
ALTER TABLE users ADD COLUMN avatar_key TEXT;
ALTER TABLE users ADD COLUMN in_directory BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN deleted_at BIGINT;

CREATE TABLE blocks (
    blocker_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_by_blocked ON blocks(blocked_id);

CREATE TABLE group_invitations (
    room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    invited_by  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    declined_at BIGINT,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX group_invitations_by_user ON group_invitations(user_id, created_at);

CREATE TABLE group_departures (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    left_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

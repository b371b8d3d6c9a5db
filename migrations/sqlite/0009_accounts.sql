-- Accounts, consent and administration (issue 16). Times are Unix milliseconds.

-- The name people see (the username stays the handle: mentions, logins of
-- bots, links); NULL shows the username.
ALTER TABLE users ADD COLUMN display_name TEXT;
-- The avatar's file key in the file store (see src/files), NULL for none.
ALTER TABLE users ADD COLUMN avatar_key TEXT;
-- Whether people who share no room with the user may find them by name.
ALTER TABLE users ADD COLUMN in_directory BOOLEAN NOT NULL DEFAULT FALSE;
-- A deleted account keeps its row (its id is the sender of what stays in
-- rooms) with its email, password and name wiped.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;

-- Who blocked whom: the blocked person cannot open a direct chat with the
-- blocker, write in their direct room or add them to a group.
CREATE TABLE blocks (
    blocker_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) WITHOUT ROWID;
CREATE INDEX blocks_by_blocked ON blocks(blocked_id);

-- A group add that needs the person's consent (see docs/protocol.md, "Who
-- may add whom") waits here for their answer. `declined_at` keeps a "no",
-- so the group cannot ask again at once.
CREATE TABLE group_invitations (
    room_id     TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    invited_by  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    declined_at INTEGER,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_invitations_by_user ON group_invitations(user_id, created_at);

-- Who left a group of their own accord: adding them back asks them first.
CREATE TABLE group_departures (
    room_id TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    left_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
) WITHOUT ROWID;

-- Settings every node reads from the database (PostgreSQL has had this
-- table since its 0002): an admin's choice of registration mode.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

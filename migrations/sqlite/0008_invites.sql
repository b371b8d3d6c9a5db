-- Who may join (issue 16): an admin role, and invitations. Times are Unix
-- milliseconds.

-- Admins make invitations (and, with --members-may-invite, members may too).
-- The first account of a server is its admin: whoever set the server up.
ALTER TABLE users ADD COLUMN is_admin BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE users SET is_admin = TRUE WHERE id = (SELECT MIN(id) FROM users);

-- An invitation: a secret code that lets `max_uses` people register (on an
-- invite-only server, or anywhere), until it expires or is revoked; each
-- joins the group it names, if any.
CREATE TABLE invites (
    -- 128 random bits, base64url: the secret part of the link.
    code       TEXT PRIMARY KEY,
    created_by INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    room_id    TEXT REFERENCES rooms(id) ON DELETE CASCADE,
    max_uses   INTEGER NOT NULL CHECK (max_uses > 0),
    uses       INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER,
    created_at INTEGER NOT NULL
);
-- A creator's list, newest first.
CREATE INDEX invites_by_creator ON invites(created_by, created_at);

-- Session lifetimes, listing and revocation on every node (issue 11).
--
-- A session gains a public id — what its owner lists and revokes it by; never
-- the token nor the hash that logs in — and the time of its last recorded use
-- (for the idle lifetime; recorded at most every few minutes). Sessions that
-- exist at the upgrade count as used now, so the upgrade does not end them all
-- at once; the absolute lifetime still counts from their creation.
-- SQLite cannot add a NOT NULL column without a default: the table is rebuilt
-- (no table refers to it).
CREATE TABLE sessions_new (
    token_hash   BLOB PRIMARY KEY,
    public_id    TEXT NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO sessions_new (token_hash, public_id, user_id, created_at, last_used_at)
    SELECT token_hash, lower(hex(randomblob(16))), user_id, created_at, unixepoch() * 1000
    FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;
CREATE INDEX sessions_by_user ON sessions(user_id);
-- The expiry sweep looks for the oldest of each, several times a second.
CREATE INDEX sessions_by_last_use ON sessions(last_used_at);
CREATE INDEX sessions_by_creation ON sessions(created_at);

-- Every session that ends (logout, revocation, password reset, disabling,
-- expiry), whoever ends it — a node, another node, the CLI —, is logged here
-- in the transaction that deletes it; each node reads the log past what it
-- has seen and disconnects its own sockets of those sessions. AUTOINCREMENT:
-- ids are never reused, even once the newest rows are pruned, so a node's
-- "after this id" never skips a new row. `at` (Unix ms) is for pruning only.
CREATE TABLE session_revocations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash BLOB NOT NULL,
    user_id    INTEGER NOT NULL,
    at         INTEGER NOT NULL
);
CREATE TRIGGER sessions_revoked AFTER DELETE ON sessions BEGIN
    INSERT INTO session_revocations (token_hash, user_id, at)
        VALUES (old.token_hash, old.user_id, unixepoch() * 1000);
END;

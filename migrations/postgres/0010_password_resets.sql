-- Password reset by email (issue 16); the same schema as
-- migrations/sqlite/0010_password_resets.sql. Times are Unix milliseconds.
--
-- A reset link's secret is never stored: only its SHA-256, like a session's
-- token, so a copy of the database sets no one's password. A link works once
-- (its row is deleted when used), until `expires_at`; an account holds a few
-- live ones at most (the domain's rule, counted per user).
CREATE TABLE password_resets (
    token_hash BYTEA PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
-- An account's links: counted, and its expired ones deleted, at each
-- request; all deleted when one is used.
CREATE INDEX password_resets_by_user ON password_resets(user_id, expires_at);

-- Session lifetimes, listing and revocation on every node (issue 11); the
-- same schema as migrations/sqlite/0005_session_lifetimes.sql.
--
-- A session gains a public id — what its owner lists and revokes it by; never
-- the token nor the hash that logs in — and the time of its last recorded use
-- (for the idle lifetime). Sessions that exist at the upgrade count as used
-- now, so the upgrade does not end them all at once. Public ids are 32 hex
-- digits, like the ones the server makes.
ALTER TABLE sessions ADD COLUMN public_id TEXT;
ALTER TABLE sessions ADD COLUMN last_used_at BIGINT;
UPDATE sessions SET public_id = replace(gen_random_uuid()::text, '-', ''),
                    last_used_at = (extract(epoch FROM now()) * 1000)::bigint;
ALTER TABLE sessions ALTER COLUMN public_id SET NOT NULL,
                     ALTER COLUMN last_used_at SET NOT NULL,
                     ADD CONSTRAINT sessions_public_id_key UNIQUE (public_id);
-- The expiry sweep looks for the oldest of each, several times a second.
CREATE INDEX sessions_by_last_use ON sessions(last_used_at);
CREATE INDEX sessions_by_creation ON sessions(created_at);

-- Every session that ends (logout, revocation, password reset, disabling,
-- expiry), whoever ends it — a node, another node, the CLI —, is logged here
-- in the transaction that deletes it; each node reads the log past what it
-- has seen and disconnects its own sockets of those sessions. `at` (Unix ms)
-- is for pruning only.
CREATE TABLE session_revocations (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash BYTEA NOT NULL,
    user_id    BIGINT NOT NULL,
    at         BIGINT NOT NULL
);

-- A node reads "the rows after the last id I saw", so ids must become visible
-- in increasing order. Identity values are handed out at INSERT, not at
-- COMMIT: two concurrent deleters could commit ids 11 then 10, and a reader
-- between the commits would move past 10 for good. So every statement that
-- deletes sessions first takes this lock, which only deleters conflict on
-- (readers never wait): they take ids and commit one after another. Taken
-- before the statement touches a row, so deleters never deadlock on rows.
-- Sessions end rarely; nothing else waits.
CREATE FUNCTION sessions_serialize_revocations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE session_revocations IN SHARE ROW EXCLUSIVE MODE;
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_serialize_revocations BEFORE DELETE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION sessions_serialize_revocations();

CREATE FUNCTION sessions_log_revocations() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO session_revocations (token_hash, user_id, at)
        SELECT token_hash, user_id, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
        FROM ended;
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_log_revocations AFTER DELETE ON sessions
    REFERENCING OLD TABLE AS ended
    FOR EACH STATEMENT EXECUTE FUNCTION sessions_log_revocations();

-- Attachments (issue 14): files uploaded into a room, then sent with a
-- message. The bytes are kept by the file store (src/files) under their
-- SHA-256 ("file key"); these rows say which room may read them. Times are
-- Unix milliseconds.
CREATE TABLE attachments (
    -- 128 random bits, base64url: the unguessable part of the file's links.
    id             TEXT PRIMARY KEY,
    room_id        TEXT NOT NULL REFERENCES rooms(id) ON DELETE CASCADE,
    uploader_id    INTEGER NOT NULL REFERENCES users(id),
    -- The message it was sent with; NULL until sent (then only its uploader
    -- may fetch it, and it expires unsent after a day).
    message_id     INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    -- The uploader's file name, cleaned (never a path).
    name           TEXT NOT NULL,
    -- From the file's bytes.
    content_type   TEXT NOT NULL,
    size           INTEGER NOT NULL,
    file_key       TEXT NOT NULL,
    -- An image's displayed size and its thumbnail; NULL for other files.
    width          INTEGER,
    height         INTEGER,
    thumbnail_key  TEXT,
    thumbnail_type TEXT,
    created_at     INTEGER NOT NULL
);
-- A deleted message takes its attachments along.
CREATE INDEX attachments_by_message ON attachments(message_id);
-- The daily expiry of uploads never sent.
CREATE INDEX attachments_unsent ON attachments(created_at) WHERE message_id IS NULL;
-- The sweep of files no attachment names.
CREATE INDEX attachments_by_file ON attachments(file_key);
CREATE INDEX attachments_by_thumbnail ON attachments(thumbnail_key);

-- What every reader of a message sees of its attachments, kept with it
-- (a JSON array, see `Attachment::to_stored`): history, sync and search read
-- one row per message, as before.
ALTER TABLE messages ADD COLUMN attachments TEXT;

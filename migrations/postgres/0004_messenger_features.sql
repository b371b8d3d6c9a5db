-- Groups, replies, edits, deletions, reactions, presence and search (issue 5);
-- the same schema as migrations/sqlite/0003_messenger_features.sql.

ALTER TABLE rooms DROP CONSTRAINT rooms_kind_check;
ALTER TABLE rooms ADD CONSTRAINT rooms_kind_check CHECK (kind IN ('direct', 'group'));
-- A group's title; NULL for a direct room (titled after the other person).
ALTER TABLE rooms ADD COLUMN title TEXT;
-- Who may add and remove members of a group; NULL for a direct room.
ALTER TABLE rooms ADD COLUMN owner_id BIGINT REFERENCES users(id);
-- The last revision handed out: bumped by each edit, deletion, reaction.
ALTER TABLE rooms ADD COLUMN last_rev BIGINT NOT NULL DEFAULT 0;

-- 'system': a record of a group change written by the server for `sender_id`.
ALTER TABLE messages ADD COLUMN kind TEXT NOT NULL DEFAULT 'text';
-- The seq of the message (in the same room) this one answers.
ALTER TABLE messages ADD COLUMN reply_to_seq BIGINT;
ALTER TABLE messages ADD COLUMN edited_at BIGINT;
ALTER TABLE messages ADD COLUMN deleted_at BIGINT;
-- The room revision of the last change; 0: never changed. `sync` catches up by it.
ALTER TABLE messages ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
CREATE INDEX messages_by_rev ON messages(room_id, rev) WHERE rev > 0;
-- The full-text index of text messages that are not deleted ('simple': no
-- language's stemming, as rooms mix languages). ASCII punctuation becomes a
-- space first: PostgreSQL's parser would keep `ops@example.test`, `report.pdf`
-- or a URL as one word, where people (and SQLite's tokenizer, and the query's
-- words) see several. The class is spelt out, so no locale changes it.
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    CASE WHEN kind = 'text' AND deleted_at IS NULL
         THEN to_tsvector('simple', regexp_replace(body, '[!-/:-@[-`{-~]+', ' ', 'g'))
    END
) STORED;
CREATE INDEX messages_search ON messages USING GIN (search);

CREATE TABLE reactions (
    message_id BIGINT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    emoji      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (message_id, user_id, emoji)
);

-- When the user's last socket closed (presence).
ALTER TABLE users ADD COLUMN last_seen_at BIGINT;
